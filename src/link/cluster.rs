//! Clusters: which records are one person. In: the number of records, the links (pairs at or
//! above the link threshold) and a way to score any pair. Out: a cluster per record (connected
//! components of the links, the strongest first) and the links refused by a guard against
//! chaining: a link never joins two clusters that hold a confident non-match (any pair of their
//! records, blocked together or not, scored below `cannot_link`), nor makes a cluster larger
//! than `max_size`. Single-linkage alone lets one wrong pair join two people's records.

/// A pair as scored: records `a < b` and the match probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub a: u32,
    pub b: u32,
    pub p: f64,
}

/// Why a link was not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The two clusters hold a pair scored as a confident non-match.
    CannotLink,
    /// The merged cluster would be larger than allowed.
    TooLarge,
}

pub struct Clustering {
    /// Cluster of each record: the smallest record index in it.
    pub cluster: Vec<u32>,
    /// Links (at or above the threshold) not followed, and why.
    pub refused: Vec<(Scored, Refused)>,
}

struct Sets {
    parent: Vec<u32>,
    members: Vec<Vec<u32>>,
}

impl Sets {
    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }
}

pub fn cluster(
    n: usize,
    links: &[Scored],
    link: f64,
    cannot_link: f64,
    max_size: usize,
    score: &dyn Fn(u32, u32) -> f64,
) -> Clustering {
    let mut links: Vec<Scored> = links.iter().copied().filter(|s| s.p >= link).collect();
    links.sort_by(|x, y| y.p.total_cmp(&x.p).then((x.a, x.b).cmp(&(y.a, y.b))));
    let mut sets = Sets {
        parent: (0..n as u32).collect(),
        members: (0..n as u32).map(|i| vec![i]).collect(),
    };
    let mut refused = Vec::new();
    for s in links {
        let (ra, rb) = (sets.find(s.a), sets.find(s.b));
        if ra == rb {
            continue;
        }
        let (small, big) = if sets.members[ra as usize].len() <= sets.members[rb as usize].len() {
            (ra, rb)
        } else {
            (rb, ra)
        };
        let (ms, mb) = (&sets.members[small as usize], &sets.members[big as usize]);
        if ms.len() + mb.len() > max_size {
            refused.push((s, Refused::TooLarge));
            continue;
        }
        // Every pair the merge would put together, scored (two records: the link itself).
        let conflict = ms.len() * mb.len() > 1
            && ms
                .iter()
                .any(|&x| mb.iter().any(|&y| score(x.min(y), x.max(y)) < cannot_link));
        if conflict {
            refused.push((s, Refused::CannotLink));
            continue;
        }
        let moved = std::mem::take(&mut sets.members[small as usize]);
        sets.members[big as usize].extend(moved);
        sets.parent[small as usize] = big;
    }
    let mut min_of = vec![u32::MAX; n];
    let roots: Vec<u32> = (0..n as u32).map(|i| sets.find(i)).collect();
    for (i, &r) in roots.iter().enumerate() {
        min_of[r as usize] = min_of[r as usize].min(i as u32);
    }
    Clustering {
        cluster: roots.iter().map(|&r| min_of[r as usize]).collect(),
        refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(a: u32, b: u32, p: f64) -> Scored {
        Scored { a, b, p }
    }

    #[test]
    fn components_with_guards_against_chaining() {
        let neutral = |_: u32, _: u32| 0.5;
        // 0-1 and 1-2 link, 3 alone.
        let c = cluster(
            4,
            &[s(0, 1, 0.99), s(1, 2, 0.97), s(2, 3, 0.5)],
            0.95,
            0.001,
            10,
            &neutral,
        );
        assert_eq!(c.cluster, vec![0, 0, 0, 3]);
        assert!(c.refused.is_empty());
        // 0 and 2 are a confident non-match (never blocked together): the weaker link 1-2 is
        // refused, not 0-1.
        let apart = |a: u32, b: u32| if (a, b) == (0, 2) { 0.0001 } else { 0.5 };
        let c = cluster(3, &[s(0, 1, 0.99), s(1, 2, 0.97)], 0.95, 0.001, 10, &apart);
        assert_eq!(c.cluster, vec![0, 0, 2]);
        assert_eq!(c.refused, vec![(s(1, 2, 0.97), Refused::CannotLink)]);
        // A size cap.
        let c = cluster(3, &[s(0, 1, 0.99), s(1, 2, 0.98)], 0.95, 0.001, 2, &neutral);
        assert_eq!(c.cluster, vec![0, 0, 2]);
        assert_eq!(c.refused[0].1, Refused::TooLarge);
    }
}
