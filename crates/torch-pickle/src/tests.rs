//! The reader on small files built by hand (testutil), where every byte is known: values,
//! views, shared storages, and malformed input of every kind.

use crate::testutil::{
    PickleWriter, TensorDesc, f32_bytes, state_dict_pickle, torch_legacy, torch_zip, zip_archive,
};
use crate::{Dtype, ErrorKind, Format, StateDict};

/// A 3x4 f32 matrix (values 0..12) with views of it, and a bias in its own f16 storage:
/// `w` (the matrix), `tied` (the same view, as a tied decoder), `w.T` (transposed),
/// `row1` (offset 4), `cols` (every other column of rows 1 and 2: offset 5, strides (4, 2)),
/// `b` (f16, offset 1 in a storage of 3).
fn entries() -> Vec<(&'static str, TensorDesc)> {
    let w = TensorDesc::f32("0", &[3, 4]);
    let view = |offset, shape: &[u64], strides: &[u64]| TensorDesc {
        offset,
        shape: shape.to_vec(),
        strides: strides.to_vec(),
        ..w.clone()
    };
    let bias = TensorDesc {
        class: "HalfStorage",
        key: "1",
        numel: 3,
        offset: 1,
        shape: vec![2],
        strides: vec![1],
    };
    vec![
        ("w", w.clone()),
        ("tied", w.clone()),
        ("w.T", view(0, &[4, 3], &[1, 4])),
        ("row1", view(4, &[4], &[1])),
        ("cols", view(5, &[2, 2], &[4, 2])),
        ("b", bias),
    ]
}

fn matrix() -> Vec<u8> {
    f32_bytes(&(0..12).map(|i| i as f32).collect::<Vec<_>>())
}

/// f16 1.0, 2.0, 3.0.
fn half_bytes() -> Vec<u8> {
    vec![0x00, 0x3c, 0x00, 0x40, 0x00, 0x42]
}

fn zip_file() -> Vec<u8> {
    let pickle = state_dict_pickle(&entries(), false);
    torch_zip(&pickle, &[("0", matrix()), ("1", half_bytes())])
}

fn legacy_file() -> Vec<u8> {
    let pickle = state_dict_pickle(&entries(), true);
    torch_legacy(&pickle, &[("0", 12, matrix()), ("1", 3, half_bytes())])
}

fn read(bytes: Vec<u8>) -> Result<StateDict, crate::Error> {
    StateDict::from_bytes("pytorch_model.bin", bytes)
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn both_formats_give_the_same_views_of_shared_storages() {
    for (bytes, format) in [(zip_file(), Format::Zip), (legacy_file(), Format::Legacy)] {
        let state = read(bytes).unwrap();
        assert_eq!(state.format(), format);
        assert_eq!(state.len(), 6);
        assert_eq!(state.storage_count(), 2);
        let names: Vec<&str> = state.tensors().map(|t| t.name()).collect();
        assert_eq!(names, ["w", "tied", "w.T", "row1", "cols", "b"]);

        let w = state.get("w").unwrap();
        let tied = state.get("tied").unwrap();
        assert_eq!(
            (w.dtype(), w.shape(), w.strides()),
            (Dtype::F32, &[3, 4][..], &[4, 1][..])
        );
        assert_eq!(w.storage_index(), tied.storage_index());
        assert!(
            std::ptr::eq(w.storage_bytes(), tied.storage_bytes()),
            "one copy"
        );
        assert_eq!(
            floats(&w.contiguous_bytes()),
            (0..12).map(|i| i as f32).collect::<Vec<_>>()
        );

        let transposed = state.get("w.T").unwrap();
        assert!(!transposed.is_contiguous());
        assert_eq!(
            floats(&transposed.contiguous_bytes()),
            [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]
        );
        let row = state.get("row1").unwrap();
        assert_eq!(row.storage_offset(), 4);
        assert_eq!(floats(&row.contiguous_bytes()), [4., 5., 6., 7.]);
        assert_eq!(
            floats(&state.get("cols").unwrap().contiguous_bytes()),
            [5., 7., 9., 11.]
        );

        let bias = state.get("b").unwrap();
        assert_eq!(bias.dtype(), Dtype::F16);
        assert_eq!(&*bias.contiguous_bytes(), &[0x00, 0x40, 0x00, 0x42]);
    }
}

#[test]
fn contiguous_tensors_are_borrowed_from_the_file() {
    let state = read(zip_file()).unwrap();
    let row = state.get("row1").unwrap();
    assert!(matches!(
        row.contiguous_bytes(),
        std::borrow::Cow::Borrowed(_)
    ));
}

#[test]
fn a_plain_dict_with_a_nested_dict_is_flattened() {
    let tensor = TensorDesc::f32("0", &[2]);
    let mut pickle = PickleWriter::new();
    pickle.op(b'}').op(b'(').str("a").tensor(&tensor, false);
    pickle
        .str("m")
        .op(b'}')
        .str("x")
        .tensor(&tensor, false)
        .op(b's');
    pickle.op(b'u');
    let bytes = torch_zip(&pickle.finish(), &[("0", f32_bytes(&[1.0, 2.0]))]);
    let state = read(bytes).unwrap();
    let names: Vec<&str> = state.tensors().map(|t| t.name()).collect();
    assert_eq!(names, ["a", "m.x"]);
}

/// The error of reading `bytes`, and its message (which names the file first).
fn error_of(bytes: Vec<u8>) -> (crate::Error, String) {
    let error = read(bytes).unwrap_err();
    let text = error.to_string();
    assert!(text.starts_with("pytorch_model.bin: "), "{text}");
    (error, text)
}

#[test]
fn files_that_are_not_torch_save_files_say_so() {
    let (_, text) = error_of(b"{\"weight_map\": {}}".to_vec());
    assert_eq!(
        text,
        "pytorch_model.bin: not a torch.save file (neither a zip archive nor the legacy pickle \
         magic); it starts with bytes 7b 22 77 65 69 67 68 74 ..."
    );
    let (_, text) = error_of(Vec::new());
    assert!(
        text.ends_with("it starts with nothing (the file is empty)"),
        "{text}"
    );
    // A pickle whose first value is not the magic number (pickle.dump of a dict).
    let mut other = PickleWriter::new();
    other.op(b'}');
    let (error, _) = error_of(other.finish());
    assert!(matches!(error.kind(), ErrorKind::NotTorchSave { .. }));
    // A legacy file with a wrong magic number.
    let mut wrong = legacy_file();
    wrong[4] ^= 0xff;
    let (error, _) = error_of(wrong);
    assert!(matches!(error.kind(), ErrorKind::NotTorchSave { .. }));
    let mut tar = vec![0u8; 600];
    tar[257..262].copy_from_slice(b"ustar");
    let (_, text) = error_of(tar);
    assert!(text.contains("tar archive"), "{text}");
}

#[test]
fn truncated_files_name_what_was_cut() {
    let legacy = legacy_file();
    let error = read(legacy[..legacy.len() - 2].to_vec()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "pytorch_model.bin: truncated: storage 1 needs 6 bytes, 4 left"
    );
    let zip = zip_file();
    let error = read(zip[..zip.len() - 10].to_vec()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("end-of-central-directory record"),
        "{error}"
    );
}

#[test]
fn every_truncation_of_either_format_is_an_error_not_a_panic() {
    for bytes in [zip_file(), legacy_file()] {
        for len in 0..bytes.len() {
            assert!(read(bytes[..len].to_vec()).is_err(), "cut at {len}");
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    // Seeded corruption of one to four bytes anywhere: an error or (when the bytes hit
    // tensor data or padding) a state dict, never a panic or a hang.
    for (which, bytes) in [zip_file(), legacy_file()].into_iter().enumerate() {
        let mut errors = 0;
        for trial in 0..3000u64 {
            let mut corrupted = bytes.clone();
            let flips = 1 + mlm_seeds::mix(&[which as u64, trial]) % 4;
            for flip in 0..flips {
                let r = mlm_seeds::mix(&[which as u64, trial, flip]);
                let at = (r % bytes.len() as u64) as usize;
                corrupted[at] = (r >> 32) as u8;
            }
            if let Ok(state) = read(corrupted) {
                for tensor in state.tensors() {
                    let _ = tensor.contiguous_bytes();
                }
            } else {
                errors += 1;
            }
        }
        assert!(errors > 500, "corruption went unnoticed: {errors} errors");
    }
}

#[test]
fn storages_of_the_wrong_size_and_views_out_of_bounds_are_errors() {
    let pickle = state_dict_pickle(&entries(), false);
    let short = torch_zip(
        &pickle,
        &[("0", matrix()[..44].to_vec()), ("1", half_bytes())],
    );
    let error = read(short).unwrap_err();
    assert_eq!(
        error.to_string(),
        "pytorch_model.bin: storage 0: expected 48 bytes (12 x f32), found 44"
    );
    let missing = torch_zip(&pickle, &[("0", matrix())]);
    let error = read(missing).unwrap_err();
    assert!(
        error.to_string().contains("no record model/data/1"),
        "{error}"
    );

    let beyond = TensorDesc {
        offset: 9,
        shape: vec![2, 2],
        strides: vec![2, 1],
        ..TensorDesc::f32("0", &[12])
    };
    let pickle = state_dict_pickle(&[("bad", beyond)], false);
    let error = read(torch_zip(&pickle, &[("0", matrix())])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "pytorch_model.bin: tensor `bad`: shape [2, 2], strides [2, 1] and offset 9 reach \
         element 12 of storage 0, which has 12 elements"
    );
    let huge = TensorDesc {
        shape: vec![1 << 40, 1 << 40],
        strides: vec![0, 0],
        ..TensorDesc::f32("0", &[12])
    };
    let pickle = state_dict_pickle(&[("huge", huge)], false);
    assert!(read(torch_zip(&pickle, &[("0", matrix())])).is_err());
}

#[test]
fn archive_level_problems_are_named() {
    let pickle = state_dict_pickle(&entries(), false);
    let big_endian = zip_archive(
        &[
            ("m/data.pkl", &pickle),
            ("m/byteorder", b"big"),
            ("m/data/0", &matrix()),
        ],
        64,
    );
    let error = read(big_endian).unwrap_err();
    assert!(error.to_string().contains("big-endian"), "{error}");

    let no_pickle = zip_archive(&[("m/data/0", &matrix())], 64);
    let error = read(no_pickle).unwrap_err();
    assert!(
        error.to_string().contains("no record <dir>/data.pkl"),
        "{error}"
    );

    let mut compressed = zip_file();
    // The central directory's first entry (data.pkl) says deflate (8).
    let central = find(&compressed, &[0x50, 0x4b, 0x01, 0x02]);
    compressed[central + 10] = 8;
    let error = read(compressed).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("record model/data.pkl is compressed"),
        "{error}"
    );

    let mut not_tensor = PickleWriter::new();
    not_tensor.op(b'}').str("epoch").int(3).op(b's');
    let error = read(torch_zip(&not_tensor.finish(), &[])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "pytorch_model.bin: state dict entry `epoch` is the int 3, not a tensor"
    );
    let mut list = PickleWriter::new();
    list.op(b']');
    let error = read(torch_zip(&list.finish(), &[])).unwrap_err();
    assert!(
        error.to_string().contains("expected a dict of tensors"),
        "{error}"
    );
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let error = StateDict::read("/nonexistent/dir/pytorch_model.bin").unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::Io(_)));
    assert_eq!(
        error.to_string(),
        "/nonexistent/dir/pytorch_model.bin: cannot read the file"
    );
    assert!(
        std::error::Error::source(&error).is_some(),
        "the io error is the source"
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
        .unwrap()
}
