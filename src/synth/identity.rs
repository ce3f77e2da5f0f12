//! Who each synthetic person is, and how each site writes it down. In: a simulated person, the
//! seed and the identity mode. Out: the person's true identity (name, birth date, sex, address,
//! a previous address if they moved, an SSN) and, per site, the record that site keeps: its own
//! MRN system, and the identity as a clerk typed it (typos, nicknames, given and family names
//! swapped, missing fields, an old address, day and month swapped), with hard cases beside it
//! (common surnames by their US frequency, a parent and adult child at one address sharing a
//! family name). `truth/identity.csv` says which site records are one person.

use super::sim::{Export, Person};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// How the exports identify people.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Identities {
    /// Every site writes the same patient id (the person's UUID) and no identity facts: exports
    /// join by identifier alone.
    #[default]
    Shared,
    /// Each site has its own MRN system and writes names, birth date, sex and address as typed
    /// there, with `national_id` the chance that a FHIR or claims record carries the SSN.
    Sites { national_id: f64 },
}

/// US surnames with their frequency per 100,000 (2010 Census, the 50 most common); the rest
/// of the population gets rarer names built from syllables.
const SURNAMES: [(&str, u32); 50] = [
    ("Smith", 828),
    ("Johnson", 655),
    ("Williams", 550),
    ("Brown", 488),
    ("Jones", 482),
    ("Garcia", 396),
    ("Miller", 393),
    ("Davis", 380),
    ("Rodriguez", 338),
    ("Martinez", 335),
    ("Hernandez", 316),
    ("Lopez", 287),
    ("Gonzalez", 280),
    ("Wilson", 272),
    ("Anderson", 270),
    ("Thomas", 262),
    ("Taylor", 259),
    ("Moore", 245),
    ("Jackson", 242),
    ("Martin", 241),
    ("Lee", 237),
    ("Perez", 231),
    ("Thompson", 230),
    ("White", 228),
    ("Harris", 216),
    ("Sanchez", 212),
    ("Clark", 192),
    ("Ramirez", 190),
    ("Lewis", 188),
    ("Robinson", 185),
    ("Walker", 185),
    ("Young", 172),
    ("Allen", 169),
    ("King", 166),
    ("Wright", 165),
    ("Scott", 157),
    ("Torres", 155),
    ("Nguyen", 155),
    ("Hill", 154),
    ("Flores", 153),
    ("Green", 151),
    ("Adams", 149),
    ("Nelson", 147),
    ("Baker", 143),
    ("Hall", 141),
    ("Rivera", 138),
    ("Campbell", 136),
    ("Mitchell", 135),
    ("Carter", 131),
    ("Roberts", 130),
];
const SYLLABLES: [&str; 30] = [
    "bar", "ven", "kol", "mar", "dan", "tre", "lin", "gor", "has", "wel", "pen", "rud", "sol",
    "ter", "vak", "mon", "bel", "cas", "dor", "fen", "gal", "hol", "jor", "kes", "lam", "nor",
    "pil", "ros", "sut", "wic",
];
const SUFFIXES: [&str; 8] = ["", "son", "ski", "er", "ley", "man", "ford", "ton"];
/// Given names in rank order (US births of the 1930s-1980s); drawn with weight 1/rank^0.8.
const MALE: [&str; 40] = [
    "James",
    "John",
    "Robert",
    "Michael",
    "William",
    "David",
    "Richard",
    "Joseph",
    "Thomas",
    "Charles",
    "Christopher",
    "Daniel",
    "Matthew",
    "Anthony",
    "Mark",
    "Donald",
    "Steven",
    "Paul",
    "Andrew",
    "Joshua",
    "Kenneth",
    "Kevin",
    "Brian",
    "George",
    "Timothy",
    "Ronald",
    "Edward",
    "Jason",
    "Jeffrey",
    "Ryan",
    "Gary",
    "Nicholas",
    "Eric",
    "Jonathan",
    "Stephen",
    "Larry",
    "Gregory",
    "Frank",
    "Raymond",
    "Patrick",
];
const FEMALE: [&str; 40] = [
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Nancy",
    "Lisa",
    "Betty",
    "Margaret",
    "Sandra",
    "Ashley",
    "Kimberly",
    "Emily",
    "Donna",
    "Michelle",
    "Dorothy",
    "Carol",
    "Amanda",
    "Melissa",
    "Deborah",
    "Stephanie",
    "Rebecca",
    "Sharon",
    "Laura",
    "Cynthia",
    "Kathleen",
    "Amy",
    "Shirley",
    "Angela",
    "Helen",
    "Anna",
    "Brenda",
    "Pamela",
    "Nicole",
    "Catherine",
];
/// What a clerk may write instead of the formal name.
const NICKNAMES: [(&str, &str); 30] = [
    ("William", "Bill"),
    ("Robert", "Bob"),
    ("Richard", "Rick"),
    ("James", "Jim"),
    ("John", "Jack"),
    ("Joseph", "Joe"),
    ("Thomas", "Tom"),
    ("Charles", "Charlie"),
    ("Christopher", "Chris"),
    ("Daniel", "Dan"),
    ("Matthew", "Matt"),
    ("Anthony", "Tony"),
    ("Michael", "Mike"),
    ("David", "Dave"),
    ("Edward", "Ed"),
    ("Steven", "Steve"),
    ("Kenneth", "Ken"),
    ("Timothy", "Tim"),
    ("Elizabeth", "Liz"),
    ("Margaret", "Peggy"),
    ("Patricia", "Pat"),
    ("Susan", "Sue"),
    ("Jennifer", "Jen"),
    ("Deborah", "Debbie"),
    ("Rebecca", "Becky"),
    ("Kimberly", "Kim"),
    ("Pamela", "Pam"),
    ("Cynthia", "Cindy"),
    ("Kathleen", "Kathy"),
    ("Catherine", "Cathy"),
];
const STREETS: [&str; 30] = [
    "Main",
    "Oak",
    "Pine",
    "Maple",
    "Cedar",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Church",
    "Highland",
    "Union",
    "Pleasant",
    "Spring",
    "Summer",
    "Chestnut",
    "Walnut",
    "School",
    "Prospect",
    "Franklin",
    "Center",
    "Water",
    "Cottage",
    "Forest",
    "River",
    "Mill",
    "Winter",
    "Bridge",
    "Academy",
];
const STREET_TYPES: [&str; 6] = ["Street", "Avenue", "Road", "Lane", "Drive", "Court"];
/// Towns and the first of their ZIP codes (each town has up to four).
const TOWNS: [(&str, u32); 24] = [
    ("Boston", 2108),
    ("Worcester", 1601),
    ("Springfield", 1101),
    ("Cambridge", 2138),
    ("Lowell", 1850),
    ("Brockton", 2301),
    ("Quincy", 2169),
    ("Lynn", 1901),
    ("New Bedford", 2740),
    ("Fall River", 2720),
    ("Newton", 2458),
    ("Lawrence", 1840),
    ("Somerville", 2143),
    ("Framingham", 1701),
    ("Haverhill", 1830),
    ("Waltham", 2451),
    ("Malden", 2148),
    ("Brookline", 2445),
    ("Plymouth", 2360),
    ("Medford", 2155),
    ("Taunton", 2780),
    ("Chicopee", 1013),
    ("Weymouth", 2188),
    ("Revere", 2151),
];

/// An address as a site writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Address {
    pub number: u32,
    pub street: String,
    pub town: &'static str,
    pub zip: String,
}

impl Address {
    pub fn line(&self) -> String {
        format!("{} {}", self.number, self.street)
    }
}

/// Who the person is.
#[derive(Debug, Clone, PartialEq)]
pub struct TrueIdentity {
    pub given: String,
    pub family: String,
    pub address: Address,
    /// Where they lived before a move inside the window, if they moved.
    pub previous: Option<Address>,
    pub ssn: String,
}

/// A site's record of the person: every field as that site typed it (`None`: not recorded).
#[derive(Debug, Clone, PartialEq)]
pub struct SiteRecord {
    pub id: String,
    pub given: Option<String>,
    pub family: Option<String>,
    /// `YYYY-MM-DD` as written.
    pub birth: String,
    pub address: Option<Address>,
    /// An earlier address the site still lists (FHIR address history), after a move.
    pub old_address: Option<Address>,
    pub ssn: Option<String>,
}

/// Weighted choice: `weights` are relative.
fn weighted(r: &mut Rng, weights: impl Iterator<Item = f64> + Clone) -> usize {
    let total: f64 = weights.clone().sum();
    let mut x = r.uniform() * total;
    let mut last = 0;
    for (i, w) in weights.enumerate() {
        if x < w {
            return i;
        }
        x -= w;
        last = i;
    }
    last
}

fn surname(r: &mut Rng) -> String {
    // The 50 most common cover about 11.9 % of Americans.
    if r.chance(0.119) {
        return SURNAMES[weighted(r, SURNAMES.iter().map(|s| s.1 as f64))]
            .0
            .to_string();
    }
    let n = 2 + r.range(0, 2) as usize;
    let mut s = String::new();
    for _ in 0..n {
        s.push_str(SYLLABLES[r.range(0, SYLLABLES.len() as u64) as usize]);
    }
    s.push_str(SUFFIXES[r.range(0, SUFFIXES.len() as u64) as usize]);
    let mut c = s.chars();
    let first = c
        .next()
        .expect("syllables are not empty")
        .to_ascii_uppercase();
    std::iter::once(first).chain(c).collect()
}

fn address(r: &mut Rng) -> Address {
    let (town, zip) = TOWNS[r.range(0, TOWNS.len() as u64) as usize];
    Address {
        number: 1 + r.range(0, 400) as u32,
        street: format!(
            "{} {}",
            STREETS[r.range(0, STREETS.len() as u64) as usize],
            STREET_TYPES[r.range(0, STREET_TYPES.len() as u64) as usize]
        ),
        town,
        zip: format!("{:05}", zip + r.range(0, 4) as u32),
    }
}

/// A bijection of `index` onto `0..modulus` (the multiplier is prime to the modulus): ids are
/// unique without a counter.
fn scramble(index: u64, salt: u64, modulus: u64) -> u64 {
    (index.wrapping_mul(7_919) + salt) % modulus
}

/// The person's id at a site: the UUID when sites share ids, else that site's own MRN.
pub fn site_id(p: &Person, seed: u64, mode: Identities, export: Export) -> String {
    if mode == Identities::Shared {
        return p.uuid.clone();
    }
    let salt = seed % 1_000_000;
    match export {
        Export::Fhir => format!("H{:08}", scramble(p.index, salt, 100_000_000)),
        Export::Omop => format!("C{:08}", scramble(p.index, salt + 17, 100_000_000)),
        Export::Synthea => format!("M{:09}", scramble(p.index, salt + 31, 1_000_000_000)),
    }
}

fn base(seed: u64, index: u64, female: bool) -> TrueIdentity {
    let mut r = Rng::new(seed, index, 0x1d);
    let names: &[&str] = if female { &FEMALE } else { &MALE };
    let given = names[weighted(
        &mut r,
        (0..names.len()).map(|k| 1.0 / ((k + 1) as f64).powf(0.8)),
    )];
    let family = surname(&mut r);
    let address = address(&mut r);
    // About one in seven adults moves house in a few years.
    let previous = r.chance(0.15).then(|| self::address(&mut r));
    let s = scramble(index, seed % 7_777, 100_000_000);
    TrueIdentity {
        given: given.to_string(),
        family,
        address,
        previous,
        ssn: format!(
            "9{:02}-{:02}-{:04}",
            s / 1_000_000,
            (s / 10_000) % 100,
            s % 10_000
        ),
    }
}

/// Who person `p` is. One in thirty shares the household of the person before them (a parent
/// and an adult child, or spouses): the same family name and address.
pub fn true_identity(p: &Person, seed: u64) -> TrueIdentity {
    let female = p.sex == crate::model::equations::pce::Sex::Female;
    let mut id = base(seed, p.index, female);
    let mut r = Rng::new(seed, p.index, 0x1e);
    if p.index > 0 && r.chance(1.0 / 30.0) {
        let other = base(seed, p.index - 1, false);
        id.family = other.family;
        id.address = other.address;
        id.previous = other.previous;
    }
    id
}

/// One keyboard slip: a letter substituted, inserted, deleted or two swapped.
fn typo(s: &str, r: &mut Rng) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if c.len() < 3 {
        return s.to_string();
    }
    let at = 1 + r.range(0, c.len() as u64 - 2) as usize;
    let letter = (b'a' + r.range(0, 26) as u8) as char;
    match r.range(0, 4) {
        0 => c[at] = letter,
        1 => c.insert(at, letter),
        2 => {
            c.remove(at);
        }
        _ => c.swap(at, at - 1),
    }
    c.into_iter().collect()
}

/// How `export` recorded person `p` (identity facts corrupted as clerks do).
pub fn site_record(
    p: &Person,
    id: &TrueIdentity,
    seed: u64,
    mode: Identities,
    export: Export,
) -> SiteRecord {
    let birth = p.birth.format("%Y-%m-%d").to_string();
    let mut rec = SiteRecord {
        id: site_id(p, seed, mode, export),
        given: None,
        family: None,
        birth: birth.clone(),
        address: None,
        old_address: None,
        ssn: None,
    };
    let Identities::Sites { national_id } = mode else {
        return rec;
    };
    let mut r = Rng::new(seed, p.index, 0x20 + export as u64);
    let mut given = id.given.clone();
    if r.chance(0.08)
        && let Some((_, nick)) = NICKNAMES.iter().find(|(f, _)| *f == given)
    {
        given = nick.to_string();
    }
    let mut family = id.family.clone();
    if r.chance(0.03) {
        given = typo(&given, &mut r);
    }
    if r.chance(0.03) {
        family = typo(&family, &mut r);
    }
    if r.chance(0.01) {
        std::mem::swap(&mut given, &mut family);
    }
    rec.given = (!r.chance(0.01)).then_some(given);
    rec.family = (!r.chance(0.005)).then_some(family);
    // Day and month swapped (only a valid date when the day is 12 or less), or a digit slip.
    let (y, m, d) = (&birth[..4], &birth[5..7], &birth[8..10]);
    if r.chance(0.01) && d <= "12" && d != m {
        rec.birth = format!("{y}-{d}-{m}");
    } else if r.chance(0.005) {
        let day: u32 = d.parse().expect("two digits");
        let slipped =
            if day >= 10 && !day.is_multiple_of(10) && day / 10 != day % 10 && day % 10 <= 2 {
                // 12 -> 21, 21 -> 12: transposed digits that still make a date.
                (day % 10) * 10 + day / 10
            } else if day < 28 {
                day + 1
            } else {
                day - 1
            };
        rec.birth = format!("{y}-{m}-{slipped:02}");
    }
    // The address this site has: the current one, or the one before a move.
    if !r.chance(0.03) {
        rec.address = Some(match &id.previous {
            Some(old) if r.chance(0.5) => old.clone(),
            _ => id.address.clone(),
        });
    }
    // A hospital that knew the person before the move keeps the old address as history.
    if export == Export::Fhir
        && let (Some(old), Some(now)) = (&id.previous, &rec.address)
        && old != now
        && r.chance(0.7)
    {
        rec.old_address = Some(old.clone());
    }
    if export != Export::Omop && r.chance(national_id) {
        rec.ssn = Some(id.ssn.clone());
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_one_edit_and_ids_are_unique_per_site() {
        let mut r = Rng::new(1, 2, 3);
        for _ in 0..200 {
            let t = typo("Margaret", &mut r);
            assert!(
                strsim::osa_distance(&t.to_lowercase(), "margaret") <= 1,
                "{t}"
            );
        }
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000u64 {
            assert!(seen.insert(scramble(i, 42, 100_000_000)));
        }
    }
}
