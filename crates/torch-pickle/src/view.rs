//! Strided views of a storage: bounds, contiguity, and materialising as contiguous bytes.

use std::borrow::Cow;

/// The last element a view reaches, `offset + sum((size - 1) * stride)`; `None` for an empty
/// view (it reaches nothing) and `Some(Err(()))` when the sum overflows u64.
pub(crate) fn last_element(shape: &[u64], strides: &[u64], offset: u64) -> Option<Result<u64, ()>> {
    if shape.contains(&0) {
        return None;
    }
    let reach = shape
        .iter()
        .zip(strides)
        .try_fold(offset, |acc, (&size, &stride)| {
            (size - 1)
                .checked_mul(stride)
                .and_then(|step| acc.checked_add(step))
        });
    Some(reach.ok_or(()))
}

/// Whether a view is row-major contiguous (dimensions of size 1 may have any stride, as in
/// torch's `is_contiguous`).
pub(crate) fn is_contiguous(shape: &[usize], strides: &[usize]) -> bool {
    if shape.contains(&0) {
        return true;
    }
    let mut expected = 1usize;
    for (&size, &stride) in shape.iter().zip(strides).rev() {
        if size != 1 && stride != expected {
            return false;
        }
        expected = expected.saturating_mul(size);
    }
    true
}

/// The elements of a view in row-major order, each `element` bytes: borrowed from `storage`
/// when the view is contiguous, gathered otherwise. The view must be in bounds (checked
/// when the file is read).
pub(crate) fn contiguous_bytes<'a>(
    storage: &'a [u8],
    element: usize,
    shape: &[usize],
    strides: &[usize],
    offset: usize,
) -> Cow<'a, [u8]> {
    let numel: usize = shape.iter().product();
    if numel == 0 {
        return Cow::Borrowed(&[]);
    }
    if is_contiguous(shape, strides) {
        return Cow::Borrowed(&storage[offset * element..(offset + numel) * element]);
    }
    Cow::Owned(gather(storage, element, shape, strides, offset, numel))
}

/// Copies a strided view row by row: the innermost dimension is one copy when its stride is
/// 1 (a slice or an offset view), element by element otherwise (a transpose).
fn gather(
    storage: &[u8],
    element: usize,
    shape: &[usize],
    strides: &[usize],
    offset: usize,
    numel: usize,
) -> Vec<u8> {
    let dims = shape.len();
    let (inner_size, inner_stride) = (shape[dims - 1], strides[dims - 1]);
    let outer = &shape[..dims - 1];
    let mut out = Vec::with_capacity(numel * element);
    let mut index = vec![0usize; outer.len()];
    loop {
        let base = offset
            + index
                .iter()
                .zip(strides)
                .map(|(i, stride)| i * stride)
                .sum::<usize>();
        if inner_stride == 1 {
            out.extend_from_slice(&storage[base * element..(base + inner_size) * element]);
        } else {
            for i in 0..inner_size {
                let at = (base + i * inner_stride) * element;
                out.extend_from_slice(&storage[at..at + element]);
            }
        }
        // The next row: an odometer over the outer dimensions.
        let mut dim = outer.len();
        loop {
            if dim == 0 {
                return out;
            }
            dim -= 1;
            index[dim] += 1;
            if index[dim] < outer[dim] {
                break;
            }
            index[dim] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes 0..n as a storage of 1-byte elements makes every gathered index visible.
    fn storage(n: u8) -> Vec<u8> {
        (0..n).collect()
    }

    #[test]
    fn contiguous_views_are_borrowed_with_their_offset() {
        let data = storage(24);
        let bytes = contiguous_bytes(&data, 2, &[2, 3], &[3, 1], 2);
        assert!(matches!(bytes, Cow::Borrowed(_)));
        assert_eq!(&*bytes, &data[4..16]);
        // Size-1 dimensions may carry any stride; a 0-d tensor is one element.
        assert!(is_contiguous(&[1, 4], &[99, 1]));
        assert_eq!(&*contiguous_bytes(&data, 4, &[], &[], 5), &data[20..24]);
        assert!(contiguous_bytes(&data, 4, &[0, 3], &[3, 1], 0).is_empty());
    }

    #[test]
    fn transposes_and_strided_slices_are_gathered_in_row_major_order() {
        let data = storage(12);
        // A 3x4 matrix transposed: shape (4, 3), strides (1, 4).
        let transposed = contiguous_bytes(&data, 1, &[4, 3], &[1, 4], 0);
        assert_eq!(&*transposed, &[0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
        // Every other column of rows 1..3 of the matrix: offset 5, strides (4, 2).
        let sliced = contiguous_bytes(&data, 1, &[2, 2], &[4, 2], 5);
        assert_eq!(&*sliced, &[5, 7, 9, 11]);
        // Rows with an inner stride of 1 but a gap between rows (a column slice).
        let columns = contiguous_bytes(&data, 1, &[3, 2], &[4, 1], 1);
        assert_eq!(&*columns, &[1, 2, 5, 6, 9, 10]);
        // Multi-byte elements move whole.
        let pairs = contiguous_bytes(&data, 2, &[2, 3], &[1, 2], 0);
        assert_eq!(&*pairs, &[0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11]);
        // A broadcast (stride 0) repeats.
        assert_eq!(&*contiguous_bytes(&data, 1, &[3], &[0], 7), &[7, 7, 7]);
    }

    #[test]
    fn the_last_element_is_checked_for_overflow() {
        assert_eq!(last_element(&[4, 3], &[1, 4], 2), Some(Ok(13)));
        assert_eq!(last_element(&[4, 0], &[1, 4], 2), None);
        assert_eq!(last_element(&[], &[], 6), Some(Ok(6)));
        assert_eq!(last_element(&[3], &[u64::MAX], 0), Some(Err(())));
    }
}
