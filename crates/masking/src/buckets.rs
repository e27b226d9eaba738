//! Length bucketing for document-mode batches (one document per sequence, lengths vary):
//! batches of similar lengths waste less compute on padding.
//!
//! The scheme is Hugging Face's `LengthGroupedSampler` (trainer_pt_utils.py,
//! `get_length_grouped_indices`): split the (already shuffled) order into windows of
//! `window_batches * batch_size` sequences, sort each window by length, longest first, and cut
//! it into batches. Unlike HF it draws no randomness of its own: the order it is given is the
//! epoch's order (a pure function of (data_seed, epoch)), so the batches are too.

/// Groups positions `0..lengths.len()` into batches of `batch_size` (the last one may be
/// shorter), each drawn from a window of `window_batches` consecutive batches' worth of
/// positions (HF uses 50; 1 sorts within each batch only). Every position appears exactly
/// once; within a window, batches go longest first and ties keep their order. A
/// `batch_size` of 0 yields no batches; a `window_batches` of 0 counts as 1.
pub fn length_buckets(
    lengths: &[usize],
    batch_size: usize,
    window_batches: usize,
) -> Vec<Vec<usize>> {
    if batch_size == 0 {
        return Vec::new();
    }
    let window = batch_size.saturating_mul(window_batches.max(1));
    let mut batches = Vec::with_capacity(lengths.len().div_ceil(batch_size));
    let mut order: Vec<usize> = Vec::with_capacity(window.min(lengths.len()));
    for start in (0..lengths.len()).step_by(window) {
        let end = start.saturating_add(window).min(lengths.len());
        order.clear();
        order.extend(start..end);
        // Stable: equal lengths keep the epoch's order.
        order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(order.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_position_once_and_sorted_within_windows() {
        let lengths: Vec<usize> = (0..1003).map(|i| (i * 7919) % 500 + 3).collect();
        let batches = length_buckets(&lengths, 16, 4);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1003).collect::<Vec<_>>());
        assert_eq!(batches.len(), 1003usize.div_ceil(16));
        assert!(batches[..batches.len() - 1].iter().all(|b| b.len() == 16));
        for window in batches.chunks(4) {
            let lens: Vec<usize> = window.iter().flatten().map(|&i| lengths[i]).collect();
            assert!(
                lens.windows(2).all(|w| w[0] >= w[1]),
                "window not longest-first"
            );
            let (lo, hi) = (
                window.iter().flatten().min().unwrap(),
                window.iter().flatten().max().unwrap(),
            );
            assert!(
                hi - lo < 64,
                "a window draws only from its own 4 * 16 positions"
            );
        }
    }

    #[test]
    fn bucketing_reduces_padding() {
        let lengths: Vec<usize> = (0..4096).map(|i| (i * 2654435761usize) % 509 + 4).collect();
        let padded = |batches: &[Vec<usize>]| -> usize {
            batches
                .iter()
                .map(|b| b.len() * b.iter().map(|&i| lengths[i]).max().unwrap())
                .sum()
        };
        let plain: Vec<Vec<usize>> = (0..4096)
            .collect::<Vec<_>>()
            .chunks(32)
            .map(<[usize]>::to_vec)
            .collect();
        let bucketed = length_buckets(&lengths, 32, 50);
        assert!(
            padded(&bucketed) * 10 < padded(&plain) * 6,
            "{} vs {}",
            padded(&bucketed),
            padded(&plain)
        );
    }

    #[test]
    fn edge_cases() {
        assert!(length_buckets(&[5, 6], 0, 3).is_empty());
        assert!(length_buckets(&[], 4, 3).is_empty());
        assert_eq!(length_buckets(&[1, 3, 2], 2, 0), vec![vec![1, 0], vec![2]]);
        assert_eq!(
            length_buckets(&[1, 3, 2, 2], 4, usize::MAX),
            vec![vec![1, 2, 3, 0]]
        );
    }
}
