//! Every popcount kernel this CPU can run gives exactly the scalar kernel's answers.

use proptest::prelude::*;
use thrifty_hamming::binary::Kernel;

/// Widths around the specialised ones (4, 8, 16 words) and ragged ones.
const WIDTHS: [usize; 12] = [1, 3, 7, 8, 16, 24, 32, 33, 64, 128, 136, 260];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn kernels_agree_with_scalar(
        width in prop::sample::select(WIDTHS.to_vec()),
        nq in 0usize..5,
        nb in 0usize..600,
        k in 1usize..20,
        fraction in 0.0f64..0.5,
        codes in prop::collection::vec(any::<u8>(), 0..(5 + 600) * 260),
    ) {
        let need = (nq + nb) * width;
        // Repeat the random bytes rather than generating megabytes per case.
        let data: Vec<u8> = if codes.is_empty() {
            vec![0xa5; need]
        } else {
            codes.iter().copied().cycle().take(need).collect()
        };
        let (queries, db) = data.split_at(nq * width);
        let r = (fraction * 8.0 * width as f64) as u32;

        let mut expected = vec![0; nq * nb];
        Kernel::Scalar.cdist(queries, db, width, &mut expected).unwrap();
        let expected_topk = Kernel::Scalar.topk(queries, db, width, k).unwrap();
        let expected_radius = Kernel::Scalar.radius(queries, db, width, r).unwrap();
        for kernel in Kernel::available() {
            let mut out = vec![-1; nq * nb];
            kernel.cdist(queries, db, width, &mut out).unwrap();
            prop_assert_eq!(&out, &expected, "{} cdist", kernel.name());
            prop_assert_eq!(kernel.topk(queries, db, width, k).unwrap(), expected_topk.clone());
            prop_assert_eq!(kernel.radius(queries, db, width, r).unwrap(), expected_radius.clone());
        }
    }
}

#[test]
fn extreme_codes_agree() {
    // All-zero and all-one codes reach distance 0 and the maximum 8 * width in every lane.
    for width in WIDTHS {
        let mut data = vec![0u8; 4 * width];
        data[width..2 * width].fill(0xff);
        data[3 * width..].fill(0xff);
        let mut expected = vec![0; 4 * 4];
        Kernel::Scalar
            .cdist(&data, &data, width, &mut expected)
            .unwrap();
        let max = 8 * width as i32;
        assert_eq!(&expected[..4], &[0, max, 0, max]);
        for kernel in Kernel::available() {
            let mut out = vec![-1; 16];
            kernel.cdist(&data, &data, width, &mut out).unwrap();
            assert_eq!(out, expected, "{} width {width}", kernel.name());
        }
    }
}

#[test]
fn kernels_parse_by_name_and_unavailable_ones_are_refused() {
    for name in ["avx512-vpopcntdq", "avx2", "neon", "scalar"] {
        assert_eq!(Kernel::parse(name).unwrap().name(), name);
    }
    assert_eq!(Kernel::parse("sse").unwrap_err().argument(), Some("kernel"));
    assert!(Kernel::Scalar.is_available());
    for name in ["avx512-vpopcntdq", "avx2", "neon"] {
        let kernel = Kernel::parse(name).unwrap();
        if !kernel.is_available() {
            let mut out = [0; 1];
            let err = kernel.cdist(&[0], &[0], 1, &mut out).unwrap_err();
            assert_eq!(err.argument(), Some("kernel"));
            assert!(kernel.topk(&[0], &[0], 1, 1).is_err());
            assert!(kernel.radius(&[0], &[0], 1, 1).is_err());
        }
    }
}
