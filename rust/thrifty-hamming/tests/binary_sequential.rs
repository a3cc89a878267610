//! After a fork the searches run on the calling thread (no pool to deadlock on) and give the
//! same answers. Its own test binary, because the fork flag is process-wide.

use thrifty_core::parallel;
use thrifty_hamming::binary;

fn codes(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

#[test]
fn a_forked_child_searches_sequentially_with_the_same_results() {
    let width = 32;
    let queries = codes(70 * width, 1);
    let db = codes(9_000 * width, 2);
    let mut parallel_cdist = vec![0; 70 * 9_000];
    binary::cdist(&queries, &db, width, &mut parallel_cdist).unwrap();
    let parallel_topk = binary::topk(&queries, &db, width, 7).unwrap();
    let parallel_radius = binary::radius(&queries[..width], &db, width, 120).unwrap();

    // What the atfork child handler does; the pool has been used above.
    parallel::note_fork();
    assert!(!parallel::enabled());

    let mut sequential_cdist = vec![0; 70 * 9_000];
    binary::cdist(&queries, &db, width, &mut sequential_cdist).unwrap();
    assert_eq!(sequential_cdist, parallel_cdist);
    assert_eq!(
        binary::topk(&queries, &db, width, 7).unwrap(),
        parallel_topk
    );
    assert_eq!(
        binary::radius(&queries[..width], &db, width, 120).unwrap(),
        parallel_radius
    );
}
