//! The ring: members, cluster weights, and the bounded-load assignment computed from them.
//!
//! [`Ring`] holds the membership view and ε; [`Ring::assign`] places a list of
//! [`ClusterLoad`]s and returns an [`Assignment`], which answers who owns a cluster, each
//! member's load, and what moved since another assignment ([`Assignment::moves_since`]).
//! The algorithm and its guarantees are described in the [parent module](super).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// Parts per million: ε is kept as an integer so every member computes the same bound.
const PPM: u64 = 1_000_000;

/// The largest ε accepted: beyond this the bound does not bind for any realistic fleet.
const MAX_EPSILON_PPM: u64 = 100 * PPM;

/// Domain tags, so a member and a cluster of the same name hash differently.
const MEMBER_DOMAIN: &[u8] = b"capstan/shard/member\0";
const CLUSTER_DOMAIN: &[u8] = b"capstan/shard/cluster\0";

/// A member of the view may carry at most `(1 + ε)` times the average load.
///
/// Smaller ε balances more tightly and moves more clusters on a membership change (more
/// clusters are displaced from their first choice, and the displaced ones follow the
/// loads around); larger ε moves fewer. The default, 0.25, is the factor Mirrokni et al.
/// and Argo CD use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epsilon {
    ppm: u64,
}

impl Epsilon {
    /// ε = 0.25: no member above 1.25 × the average load.
    pub const DEFAULT: Epsilon = Epsilon { ppm: PPM / 4 };

    /// ε as a fraction (0.25 for 25 % over the average), rounded to a millionth.
    ///
    /// # Errors
    /// [`RingError::InvalidEpsilon`] unless `0 ≤ epsilon ≤ 100`.
    pub fn new(epsilon: f64) -> Result<Self, RingError> {
        let max = (MAX_EPSILON_PPM / PPM) as f64;
        if !epsilon.is_finite() || !(0.0..=max).contains(&epsilon) {
            return Err(RingError::InvalidEpsilon(epsilon.to_string()));
        }
        // In range and finite: the product fits a u64 exactly enough.
        let ppm = (epsilon * PPM as f64).round() as u64;
        Ok(Epsilon { ppm })
    }

    /// ε as a fraction.
    pub fn get(self) -> f64 {
        self.ppm as f64 / PPM as f64
    }
}

impl Default for Epsilon {
    fn default() -> Self {
        Epsilon::DEFAULT
    }
}

impl fmt::Display for Epsilon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl FromStr for Epsilon {
    type Err = RingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value: f64 = s
            .trim()
            .parse()
            .map_err(|_| RingError::InvalidEpsilon(s.to_owned()))?;
        Epsilon::new(value)
    }
}

/// What can be wrong with a ring's inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// There are clusters but no live member to own them.
    #[error(
        "no live controller member to assign {clusters} clusters to; start a controller or wait for its membership lease"
    )]
    NoMembers {
        /// How many clusters were to be assigned.
        clusters: usize,
    },
    /// The same cluster appears twice in one assignment's input.
    #[error("cluster '{0}' appears twice in the clusters to assign; each cluster is listed once")]
    DuplicateCluster(String),
    /// ε is not a number between 0 and 100.
    #[error("the load bound's epsilon must be a number from 0 to 100 (e.g. 0.25), got '{0}'")]
    InvalidEpsilon(String),
}

/// A cluster and its weight: what it costs a member to reconcile it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterLoad {
    /// The cluster's identity, the same on every member (its server URL).
    pub id: String,
    /// Its load in arbitrary units; loads are compared only with each other.
    pub weight: u32,
}

impl ClusterLoad {
    /// How many watched objects weigh as much as one Application. An Application costs a
    /// render, a comparison and status writes per refresh; a watched object costs its cache
    /// entry and its watch events. Typical Applications manage about ten objects, so an
    /// Application and its objects weigh about the same. A first estimate, to be calibrated
    /// against the controller bench.
    pub const OBJECTS_PER_UNIT: u64 = 10;

    /// A cluster of the given weight.
    pub fn new(id: impl Into<String>, weight: u32) -> Self {
        ClusterLoad {
            id: id.into(),
            weight,
        }
    }

    /// A cluster weighed from its Applications and watched objects: 1 for the cluster itself
    /// (its cache and watch connections, even with nothing deployed), 1 per Application, and
    /// 1 per [`Self::OBJECTS_PER_UNIT`] watched objects; saturating at `u32::MAX`.
    pub fn from_counts(id: impl Into<String>, applications: u64, watched_objects: u64) -> Self {
        let weight = 1u64
            .saturating_add(applications)
            .saturating_add(watched_objects / Self::OBJECTS_PER_UNIT);
        ClusterLoad::new(id, u32::try_from(weight).unwrap_or(u32::MAX))
    }
}

/// The membership view (a set of member names) and ε.
///
/// Feed it membership changes ([`Ring::join`], [`Ring::leave`]) and ask for an assignment;
/// two rings with the same members and ε assign identically, whatever order the members
/// joined in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ring {
    /// Member name → its hash and capacity, ordered by name.
    members: BTreeMap<String, (u64, u32)>,
    epsilon: Epsilon,
}

impl Ring {
    /// An empty ring with the given ε.
    pub fn new(epsilon: Epsilon) -> Self {
        Ring {
            members: BTreeMap::new(),
            epsilon,
        }
    }

    /// A ring of these members (duplicates count once).
    pub fn with_members<I, S>(epsilon: Epsilon, members: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut ring = Ring::new(epsilon);
        for member in members {
            ring.join(member);
        }
        ring
    }

    /// Adds a member of capacity 1; false if it was already there.
    pub fn join(&mut self, member: impl Into<String>) -> bool {
        self.join_with_capacity(member, 1)
    }

    /// Adds a member that can carry `capacity` times what a member of capacity 1 carries
    /// (0 counts as 1); false if it was already there (its capacity is then unchanged).
    ///
    /// A member's bound is its share of `(1 + ε)` × the total weight: `(1 + ε) · W · c /
    /// Σc`, and its share of first choices grows with its capacity (weighted rendezvous
    /// hashing), so a member of capacity 2 carries about twice the load of one of capacity 1.
    pub fn join_with_capacity(&mut self, member: impl Into<String>, capacity: u32) -> bool {
        let member = member.into();
        if self.members.contains_key(&member) {
            return false;
        }
        let key = key(MEMBER_DOMAIN, &member);
        self.members.insert(member, (key, capacity.max(1)));
        true
    }

    /// A member's capacity, if it is in the view.
    pub fn capacity(&self, member: &str) -> Option<u32> {
        self.members.get(member).map(|&(_, capacity)| capacity)
    }

    /// Removes a member; false if it was not there.
    pub fn leave(&mut self, member: &str) -> bool {
        self.members.remove(member).is_some()
    }

    /// The members, by name.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// How many members the view has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the view has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The slack of the load bound.
    pub fn epsilon(&self) -> Epsilon {
        self.epsilon
    }

    /// Places every cluster on a member (the algorithm is in the [module docs](super)).
    /// The order of `clusters` does not matter.
    ///
    /// # Errors
    /// [`RingError::NoMembers`] if there are clusters and no member;
    /// [`RingError::DuplicateCluster`] if a cluster is listed twice.
    pub fn assign(&self, clusters: &[ClusterLoad]) -> Result<Assignment, RingError> {
        let members: Vec<(&str, u64)> = self
            .members
            .iter()
            .map(|(name, (key, _))| (name.as_str(), *key))
            .collect();
        let capacities: Vec<u64> = self
            .members
            .values()
            .map(|&(_, capacity)| u64::from(capacity))
            .collect();
        let total_capacity: u128 = capacities.iter().map(|&c| u128::from(c)).sum();
        // Equal capacities (the usual case) rank by the integer score alone; unequal ones by
        // weighted rendezvous, which agrees with it when capacities are equal.
        let weighted = capacities.windows(2).any(|pair| pair[0] != pair[1]);
        let prefer = |cluster_key: u64, a: usize, b: usize| -> std::cmp::Ordering {
            let ordering = if weighted {
                weighted_score(score(cluster_key, members[a].1), capacities[a]).total_cmp(
                    &weighted_score(score(cluster_key, members[b].1), capacities[b]),
                )
            } else {
                score(cluster_key, members[a].1).cmp(&score(cluster_key, members[b].1))
            };
            // Higher first; ties by name.
            ordering.then_with(|| members[b].0.cmp(members[a].0))
        };
        if members.is_empty() && !clusters.is_empty() {
            return Err(RingError::NoMembers {
                clusters: clusters.len(),
            });
        }

        let mut order: Vec<(&ClusterLoad, u64)> = clusters
            .iter()
            .map(|c| (c, key(CLUSTER_DOMAIN, &c.id)))
            .collect();
        order.sort_unstable_by(|a, b| a.0.id.cmp(&b.0.id));
        if let Some(pair) = order.windows(2).find(|pair| pair[0].0.id == pair[1].0.id) {
            return Err(RingError::DuplicateCluster(pair[0].0.id.clone()));
        }
        let total: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
        // load + weight ≤ (1 + ε) · total · c / Σc, multiplied out: (load + weight) · Σc · PPM
        // ≤ total · (PPM + ε·PPM) · c (with every c = 1, Σc = n: the plain bound). Weights
        // are u32, loads u64 and capacities u32, so u128 cannot overflow for any realistic
        // fleet.
        let n = members.len() as u128;
        let limit = u128::from(total) * u128::from(PPM + self.epsilon.ppm);
        let fits = |member: usize, load: u64, weight: u64| {
            u128::from(load + weight) * total_capacity * u128::from(PPM)
                <= limit * u128::from(capacities[member])
        };
        // A "coarse" cluster weighs more than ε · total / (n − 1): only such a cluster can
        // find every member without room (the least-loaded member has at most
        // (total − w) / n). Coarse clusters go first, heaviest first, while there is the most
        // room (one too heavy for the bound lands alone on an empty member). Fine clusters
        // follow, lightest first, so that where the bound binds a member sheds a few of its
        // heaviest clusters rather than thousands of light ones. Ties by hash, not by name.
        let coarse = |weight: u32| {
            u128::from(weight) * (n.saturating_sub(1)) * u128::from(PPM)
                > u128::from(total) * u128::from(self.epsilon.ppm)
        };
        order.sort_unstable_by(|a, b| {
            let (wa, wb) = (a.0.weight, b.0.weight);
            let by_weight = match (coarse(wa), coarse(wb)) {
                (true, true) => wb.cmp(&wa),
                (false, false) => wa.cmp(&wb),
                (ca, cb) => cb.cmp(&ca),
            };
            by_weight
                .then(a.1.cmp(&b.1))
                .then_with(|| a.0.id.cmp(&b.0.id))
        });

        let mut loads = vec![0u64; members.len()];
        let mut counts = vec![0usize; members.len()];
        let mut owners = BTreeMap::new();
        let mut ranking: Vec<usize> = Vec::with_capacity(members.len());
        for (cluster, cluster_key) in order {
            let weight = u64::from(cluster.weight);
            // The first choice alone is O(N); most clusters stop there.
            let first = (0..members.len())
                .max_by(|&a, &b| prefer(cluster_key, a, b))
                .expect("members is not empty when there are clusters");
            let (member, choice) = if fits(first, loads[first], weight) {
                (first, Choice::First)
            } else {
                ranking.clear();
                ranking.extend(0..members.len());
                ranking.sort_unstable_by(|&a, &b| prefer(cluster_key, b, a));
                match ranking.iter().position(|&i| fits(i, loads[i], weight)) {
                    Some(rank) => (ranking[rank], Choice::Later),
                    None => {
                        // Nobody has room: the least loaded for its capacity, earliest in
                        // preference.
                        let i = ranking
                            .iter()
                            .copied()
                            .min_by(|&a, &b| {
                                (u128::from(loads[a]) * u128::from(capacities[b]))
                                    .cmp(&(u128::from(loads[b]) * u128::from(capacities[a])))
                            })
                            .expect("ranking holds every member");
                        (i, Choice::LeastLoaded)
                    }
                }
            };
            loads[member] += weight;
            counts[member] += 1;
            owners.insert(
                cluster.id.clone(),
                Placement {
                    member,
                    weight: cluster.weight,
                    choice,
                },
            );
        }

        Ok(Assignment {
            members: members
                .iter()
                .zip(loads.iter().zip(&counts))
                .zip(&capacities)
                .map(
                    |((&(name, _), (&load, &clusters)), &capacity)| MemberState {
                        name: name.to_owned(),
                        load,
                        clusters,
                        capacity,
                    },
                )
                .collect(),
            owners,
            total_weight: total,
            epsilon: self.epsilon,
        })
    }
}

/// Where a cluster landed in its preference order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    /// Its first choice had room.
    First,
    /// A later choice, the earlier ones being full.
    Later,
    /// Nobody had room; the least-loaded member took it.
    LeastLoaded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Placement {
    /// Index into [`Assignment::members`].
    member: usize,
    weight: u32,
    choice: Choice,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MemberState {
    name: String,
    load: u64,
    clusters: usize,
    capacity: u64,
}

/// One member's share of an assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberLoad<'a> {
    /// The member's name.
    pub member: &'a str,
    /// The sum of its clusters' weights.
    pub load: u64,
    /// How many clusters it owns.
    pub clusters: usize,
}

/// A cluster whose owner differs between two assignments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move<'a> {
    /// The cluster.
    pub cluster: &'a str,
    /// Its owner before (it releases the cluster's ownership key).
    pub from: &'a str,
    /// Its owner now (it takes the key).
    pub to: &'a str,
    /// The cluster's weight now.
    pub weight: u32,
}

/// Who owns which cluster, computed by [`Ring::assign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Every member of the view (also those that own nothing), ordered by name.
    members: Vec<MemberState>,
    /// Cluster → where it is placed.
    owners: BTreeMap<String, Placement>,
    total_weight: u64,
    epsilon: Epsilon,
}

impl Assignment {
    /// The member that owns `cluster`, if the cluster was assigned.
    pub fn owner(&self, cluster: &str) -> Option<&str> {
        self.owners
            .get(cluster)
            .map(|p| self.members[p.member].name.as_str())
    }

    /// Every cluster with its owner, ordered by cluster.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.owners
            .iter()
            .map(|(c, p)| (c.as_str(), self.members[p.member].name.as_str()))
    }

    /// The clusters `member` owns, ordered by name.
    pub fn clusters_of<'a>(&'a self, member: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter()
            .filter(move |&(_, owner)| owner == member)
            .map(|(cluster, _)| cluster)
    }

    /// Every member's load, ordered by name (members that own nothing included).
    pub fn loads(&self) -> impl Iterator<Item = MemberLoad<'_>> {
        self.members.iter().map(|m| MemberLoad {
            member: &m.name,
            load: m.load,
            clusters: m.clusters,
        })
    }

    /// One member's load, if it is in the view.
    pub fn load(&self, member: &str) -> Option<u64> {
        self.members
            .iter()
            .find(|m| m.name == member)
            .map(|m| m.load)
    }

    /// How many clusters are assigned.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// Whether no cluster is assigned.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// The sum of all clusters' weights.
    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }

    /// The total weight divided by the number of members (0 without members).
    pub fn average_load(&self) -> f64 {
        if self.members.is_empty() {
            return 0.0;
        }
        self.total_weight as f64 / self.members.len() as f64
    }

    /// The bound, `(1 + ε)` × the average load (of a member of capacity 1 when capacities
    /// differ: see [`Assignment::bound_of`]).
    pub fn bound(&self) -> f64 {
        let total_capacity: u64 = self.members.iter().map(|m| m.capacity).sum();
        if total_capacity == 0 {
            return 0.0;
        }
        (1.0 + self.epsilon.get()) * self.total_weight as f64 / total_capacity as f64
    }

    /// One member's bound, `(1 + ε) · W · c / Σc`, if it is in the view.
    pub fn bound_of(&self, member: &str) -> Option<f64> {
        self.members
            .iter()
            .find(|m| m.name == member)
            .map(|m| self.bound() * m.capacity as f64)
    }

    /// The heaviest member's load.
    pub fn max_load(&self) -> u64 {
        self.members.iter().map(|m| m.load).max().unwrap_or(0)
    }

    /// How many clusters the bound kept off their first choice.
    pub fn displaced(&self) -> usize {
        self.owners
            .values()
            .filter(|p| p.choice != Choice::First)
            .count()
    }

    /// How many clusters no member had room for (placed on the least-loaded member): the
    /// cases where a member may end above the bound.
    pub fn over_bound_placements(&self) -> usize {
        self.owners
            .values()
            .filter(|p| p.choice == Choice::LeastLoaded)
            .count()
    }

    /// The clusters whose owner changed since `before`, ordered by cluster. Clusters only in
    /// one of the two are not moves (they were added or removed).
    pub fn moves_since<'a>(&'a self, before: &'a Assignment) -> Vec<Move<'a>> {
        self.owners
            .iter()
            .filter_map(|(cluster, now)| {
                let then = before.owners.get(cluster)?;
                let from = before.members[then.member].name.as_str();
                let to = self.members[now.member].name.as_str();
                (from != to).then_some(Move {
                    cluster,
                    from,
                    to,
                    weight: now.weight,
                })
            })
            .collect()
    }

    /// The members of the view this assignment was computed for.
    pub fn members(&self) -> BTreeSet<&str> {
        self.members.iter().map(|m| m.name.as_str()).collect()
    }
}

/// A stable 64-bit hash of a name: the first 8 bytes of SHA-256 over a domain tag and the
/// name. Part of the protocol between members (see the module docs).
fn key(domain: &[u8], name: &str) -> u64 {
    let digest = sha2::Sha256::new()
        .chain_update(domain)
        .chain_update(name.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// Weighted rendezvous (Schindelhauer and Schomaker): the score as a uniform draw `u` in
/// (0, 1), turned into `-c / ln u`. The member with the highest value is first; a member's
/// chance to be first is its share of the capacity, and removing a member leaves the others'
/// relative order unchanged. For equal capacities it orders as the plain score does. It uses
/// floating-point logarithms, so members of one control plane should run the same release on
/// the same platform (they must agree on the hash anyway); the ownership keys keep a
/// disagreement safe.
fn weighted_score(score: u64, capacity: u64) -> f64 {
    // (score + 0.5) / 2^64, never 0 or 1.
    let u = ((score >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(capacity as f64) / u.ln()
}

/// The rendezvous score of a (cluster, member) pair: the splitmix64 finalizer over the two
/// keys. A bijective mixer over uniform keys gives each cluster an independent, uniform
/// ranking of the members, at a few nanoseconds per pair.
fn score(cluster: u64, member: u64) -> u64 {
    let mut z = cluster ^ member.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
