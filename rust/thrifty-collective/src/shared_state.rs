//! Shared-state synchronisation by hash popularity (PCCL's scheme).
//!
//! Every peer hashes each named array (xxh3-128 over dtype, shape and bytes) and publishes a
//! summary. The most popular (revision, state) wins; ties go to the higher revision, then to
//! the state held by the lowest rank. Each out-of-date array of each peer is fetched from one
//! of the up-to-date peers, spread round-robin so no single peer serves everything, and
//! verified against the winning hash before it is used. Every peer computes the same
//! [`TransferPlan`] from the same summaries, so no further agreement is needed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::dtype::DType;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub hash: u128,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub revision: u64,
    /// Sorted by name.
    pub entries: Vec<Entry>,
}

/// xxh3-128 of an array: its dtype and shape count, so a reshaped array never matches.
pub fn hash_array(dtype: DType, shape: &[usize], data: &[u8]) -> u128 {
    let mut hasher = Xxh3::new();
    hasher.update(dtype.name().as_bytes());
    for &d in shape {
        hasher.update(&(d as u64).to_le_bytes());
    }
    hasher.update(data);
    hasher.digest128()
}

impl Summary {
    /// The hash of the whole state (names and array hashes, in name order).
    pub fn state_hash(&self) -> u128 {
        let mut hasher = Xxh3::new();
        for entry in &self.entries {
            hasher.update(&(entry.name.len() as u64).to_le_bytes());
            hasher.update(entry.name.as_bytes());
            hasher.update(&entry.hash.to_le_bytes());
        }
        hasher.digest128()
    }
}

/// One array to move: from the peer at position `from` to the one at `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub from: usize,
    pub to: usize,
    /// Index into the winner's entries.
    pub entry: usize,
}

/// Who wins, and which arrays move between which peers to make every peer hold the winner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferPlan {
    /// Position of the peer whose summary is the winning state.
    pub winner: usize,
    pub revision: u64,
    pub up_to_date: Vec<bool>,
    pub transfers: Vec<Transfer>,
    /// Per peer: why its arrays cannot take the winning state (names, dtypes or shapes differ).
    pub mismatch: Vec<Option<String>>,
}

fn describe(entry: &Entry) -> String {
    format!("{}[{:?}]", entry.dtype.name(), entry.shape)
}

/// The transfer plan every peer derives from the same summaries (in rank order).
pub fn transfer_plan(summaries: &[Summary]) -> TransferPlan {
    let keys: Vec<(u64, u128)> = summaries
        .iter()
        .map(|s| (s.revision, s.state_hash()))
        .collect();
    let mut counts: BTreeMap<(u64, u128), (usize, usize)> = BTreeMap::new();
    for (pos, key) in keys.iter().enumerate() {
        let slot = counts.entry(*key).or_insert((0, pos));
        slot.0 += 1;
    }
    // Most peers, then the higher revision, then the lowest first holder.
    let (&winning_key, &(_, winner)) = counts
        .iter()
        .max_by(|a, b| {
            (a.1 .0, a.0 .0, std::cmp::Reverse(a.1 .1)).cmp(&(
                b.1 .0,
                b.0 .0,
                std::cmp::Reverse(b.1 .1),
            ))
        })
        .expect("at least one summary");
    let up_to_date: Vec<bool> = keys.iter().map(|k| *k == winning_key).collect();
    let sources: Vec<usize> = (0..summaries.len()).filter(|&p| up_to_date[p]).collect();
    let reference = &summaries[winner];
    let mut transfers = Vec::new();
    let mut mismatch = vec![None; summaries.len()];
    for (to, summary) in summaries.iter().enumerate() {
        if up_to_date[to] {
            continue;
        }
        let mine: BTreeMap<&str, &Entry> = summary
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e))
            .collect();
        let theirs: Vec<&str> = reference.entries.iter().map(|e| e.name.as_str()).collect();
        if mine.len() != theirs.len() || theirs.iter().any(|n| !mine.contains_key(n)) {
            mismatch[to] = Some(format!(
                "the shared state holds arrays {theirs:?}, this peer passed {:?}",
                mine.keys().collect::<Vec<_>>()
            ));
            continue;
        }
        for (index, entry) in reference.entries.iter().enumerate() {
            let own = mine[entry.name.as_str()];
            if own.dtype != entry.dtype || own.shape != entry.shape {
                mismatch[to] = Some(format!(
                    "array '{}' is {} here but {} in the shared state",
                    entry.name,
                    describe(own),
                    describe(entry)
                ));
                break;
            }
            if own.hash != entry.hash {
                let from = sources[(to + index) % sources.len()];
                transfers.push(Transfer {
                    from,
                    to,
                    entry: index,
                });
            }
        }
        if mismatch[to].is_some() {
            transfers.retain(|t| t.to != to);
        }
    }
    TransferPlan {
        winner,
        revision: winning_key.0,
        up_to_date,
        transfers,
        mismatch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(revision: u64, hashes: &[u128]) -> Summary {
        Summary {
            revision,
            entries: hashes
                .iter()
                .enumerate()
                .map(|(i, &hash)| Entry {
                    name: format!("a{i}"),
                    dtype: DType::F32,
                    shape: vec![4],
                    hash,
                })
                .collect(),
        }
    }

    #[test]
    fn majority_wins_and_stale_arrays_are_spread_over_sources() {
        let s = [
            summary(3, &[1, 2]),
            summary(3, &[1, 2]),
            summary(2, &[1, 9]),
            summary(3, &[7, 8]),
        ];
        let plan = transfer_plan(&s);
        assert_eq!(plan.revision, 3);
        assert_eq!(plan.up_to_date, vec![true, true, false, false]);
        assert_eq!(
            plan.transfers,
            vec![
                Transfer {
                    from: 1,
                    to: 2,
                    entry: 1
                },
                Transfer {
                    from: 1,
                    to: 3,
                    entry: 0
                },
                Transfer {
                    from: 0,
                    to: 3,
                    entry: 1
                },
            ]
        );
    }

    #[test]
    fn ties_go_to_the_higher_revision() {
        let plan = transfer_plan(&[summary(4, &[1]), summary(5, &[2])]);
        assert_eq!(plan.winner, 1);
        assert_eq!(plan.revision, 5);
    }

    #[test]
    fn a_shape_mismatch_is_reported_not_transferred() {
        let mut odd = summary(1, &[5]);
        odd.entries[0].shape = vec![2, 2];
        let plan = transfer_plan(&[summary(1, &[1]), summary(1, &[1]), odd]);
        assert!(plan.mismatch[2].as_deref().unwrap_or("").contains("a0"));
        assert!(plan.transfers.is_empty());
    }

    #[test]
    fn hashes_see_shape_and_dtype() {
        let data = [0u8; 16];
        let a = hash_array(DType::F32, &[4], &data);
        assert_ne!(a, hash_array(DType::F32, &[2, 2], &data));
        assert_ne!(a, hash_array(DType::I32, &[4], &data));
        assert_eq!(a, hash_array(DType::F32, &[4], &data));
    }
}
