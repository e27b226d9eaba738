use super::*;
use crate::Dtype;
use crate::testutil::{PickleWriter, TensorDesc, state_dict_pickle};

fn run(bytes: &[u8]) -> Result<Unpickled, ErrorKind> {
    unpickle(bytes, 0, "test.pkl")
}

fn dict_items(unpickled: &Unpickled) -> &[(Value, Value)] {
    match unpickled.arena.get(unpickled.root) {
        Some(Object::Dict(items)) => items,
        other => panic!("not a dict: {other:?}"),
    }
}

#[test]
fn a_state_dict_as_torch_writes_it_decodes_to_tensors_and_storages() {
    let weight = TensorDesc::f32("0", &[3, 2]);
    let transposed = TensorDesc {
        shape: vec![2, 3],
        strides: vec![1, 2],
        ..weight
    };
    let bias = TensorDesc {
        class: "HalfStorage",
        key: "1",
        numel: 10,
        offset: 4,
        shape: vec![5],
        strides: vec![1],
    };
    let bytes = state_dict_pickle(&[("w", weight), ("w.T", transposed), ("b", bias)], false);
    let unpickled = run(&bytes).unwrap();
    assert_eq!(unpickled.end, bytes.len());
    assert_eq!(
        unpickled.storages,
        [
            StorageDecl {
                key: "0".into(),
                dtype: Dtype::F32,
                numel: 6
            },
            StorageDecl {
                key: "1".into(),
                dtype: Dtype::F16,
                numel: 10
            },
        ]
    );
    let items = dict_items(&unpickled);
    let names: Vec<&str> = items
        .iter()
        .map(|(key, _)| unpickled.arena.str(*key).unwrap())
        .collect();
    assert_eq!(
        names,
        ["w", "w.T", "b"],
        "_metadata is an attribute, not an item"
    );
    let spec = |value| match unpickled.arena.get(value) {
        Some(Object::Tensor(spec)) => spec.clone(),
        other => panic!("not a tensor: {other:?}"),
    };
    assert_eq!(
        spec(items[1].1),
        TensorSpec {
            storage: 0,
            offset: 0,
            shape: vec![2, 3],
            strides: vec![1, 2]
        }
    );
    assert_eq!(spec(items[2].1).offset, 4);
    assert_eq!(spec(items[2].1).storage, 1);
}

#[test]
fn a_forbidden_global_is_named_and_never_called() {
    let mut pickle = PickleWriter::new();
    pickle
        .global("numpy.core.multiarray", "_reconstruct")
        .op(b')')
        .op(b'R');
    let error = run(&pickle.finish()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "unsupported pickle global `numpy.core.multiarray._reconstruct` (only a state dict of \
         tensors can be read)"
    );
    let mut pickle = PickleWriter::new();
    pickle.str("os").str("system").op(0x93);
    let error = run(&pickle.finish()).unwrap_err();
    assert!(error.to_string().contains("`os.system`"), "{error}");
    // A storage class is only a persistent id's type, not something to call.
    let mut pickle = PickleWriter::new();
    pickle.global("torch", "FloatStorage").op(b')').op(b'R');
    let error = run(&pickle.finish()).unwrap_err();
    assert!(error.to_string().contains("a function to call"), "{error}");
}

#[test]
fn opcodes_a_state_dict_never_uses_are_refused_with_their_offset() {
    // INST (`i`) creates an instance of any class in Python.
    let mut pickle = PickleWriter::new();
    pickle.op(b'N').op(b'i');
    let error = run(&pickle.finish()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "test.pkl, byte 3: pickle opcode 0x69 is not supported (only the opcodes of a state \
         dict are)"
    );
    let error = run(&[0x80, 9, b'N', b'.']).unwrap_err();
    assert!(
        error.to_string().contains("pickle protocol 2 to 5"),
        "{error}"
    );
}

#[test]
fn integers_of_every_width_decode() {
    let cases: [(&[u8], i128); 8] = [
        (b"K\xff", 255),
        (b"M\x34\x12", 0x1234),
        (b"J\xfe\xff\xff\xff", -2),
        (b"\x8a\x00", 0),
        (b"\x8a\x01\xff", -1),
        (b"\x8a\x02\x00\x80", -0x8000),
        (b"\x8a\x03\x00\x80\x00", 0x8000),
        (
            b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19",
            0x1950_a86a_20f9_469c_fc6c,
        ),
    ];
    for (body, expected) in cases {
        let mut bytes = vec![0x80, 2];
        bytes.extend_from_slice(body);
        bytes.push(b'.');
        assert_eq!(run(&bytes).unwrap().root, Value::Int(expected), "{body:?}");
    }
    let mut too_long = vec![0x80, 2, 0x8a, 17];
    too_long.extend([1; 17]);
    too_long.push(b'.');
    assert!(run(&too_long).is_err());
    assert_eq!(
        run(b"\x80\x02G\x3f\xf8\x00\x00\x00\x00\x00\x00.")
            .unwrap()
            .root,
        Value::Float(1.5)
    );
}

#[test]
fn memoised_objects_are_shared_and_see_later_changes() {
    // d = {}; memo[0] = d; l = [d, d]; d["k"] = 1; (l, d): l's items are d, changed.
    let mut pickle = PickleWriter::new();
    pickle
        .op(b'}')
        .op(b'q')
        .op(0)
        .op(b']')
        .op(b'(')
        .op(b'h')
        .op(0)
        .op(b'h')
        .op(0)
        .op(b'e')
        .op(b'h')
        .op(0)
        .str("k")
        .int(1)
        .op(b's')
        .op(b'\x86');
    let unpickled = run(&pickle.finish()).unwrap();
    let Some(Object::Tuple(pair)) = unpickled.arena.get(unpickled.root) else {
        panic!("a tuple");
    };
    let Some(Object::List(list)) = unpickled.arena.get(pair[0]) else {
        panic!("a list");
    };
    assert_eq!(list, &[pair[1], pair[1]]);
    assert!(matches!(unpickled.arena.get(pair[1]), Some(Object::Dict(items)) if items.len() == 1));

    let error = run(b"\x80\x02h\x07.").unwrap_err();
    assert!(
        error.to_string().contains("index 7, never stored"),
        "{error}"
    );
}

#[test]
fn a_malformed_stack_is_an_error() {
    for body in [
        &b"R"[..],      // REDUCE on an empty stack
        b"(R",          // ... or only a MARK
        b"Nu",          // SETITEMS without a MARK
        b"}(Nu",        // an odd number of items
        b"N\x86",       // TUPLE2 with one value
        b"K\x01K\x02R", // calling an int
        b"]Nb",         // BUILD on a list
        b"",            // no STOP
        b"(",           // STOP with only a MARK
        b"NQ",          // a persistent id that is not a tuple
        b"Nq\x00a",     // APPEND to None
    ] {
        let mut bytes = vec![0x80, 2];
        bytes.extend_from_slice(body);
        if !body.is_empty() {
            bytes.push(b'.');
        }
        assert!(run(&bytes).is_err(), "{body:?} was accepted");
    }
}

#[test]
fn protocol_4_framing_short_strings_and_stack_globals_decode() {
    let mut bytes = vec![0x80, 4, 0x95];
    bytes.extend_from_slice(&20u64.to_le_bytes());
    bytes.extend_from_slice(b"\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94.");
    let unpickled = run(&bytes).unwrap();
    assert_eq!(
        unpickled.arena.get(unpickled.root),
        Some(&Object::Dict(Vec::new()))
    );
}

#[test]
fn every_truncation_of_a_state_dict_pickle_is_an_error() {
    let bytes = state_dict_pickle(&[("w", TensorDesc::f32("0", &[3, 2]))], true);
    for len in 0..bytes.len() {
        assert!(run(&bytes[..len]).is_err(), "cut at {len}");
    }
    assert!(run(&bytes).is_ok());
}

#[test]
fn a_million_nested_tuples_neither_overflow_the_stack_nor_hang() {
    let mut bytes = vec![0x80, 2, b'N'];
    bytes.extend(std::iter::repeat_n(0x85, 1_000_000));
    bytes.push(b'.');
    let unpickled = run(&bytes).unwrap();
    assert!(matches!(
        unpickled.arena.get(unpickled.root),
        Some(Object::Tuple(_))
    ));
    drop(unpickled);
}

#[test]
fn persistent_ids_declare_each_storage_once_and_conflicts_are_errors() {
    let tensor = TensorDesc::f32("7", &[4]);
    let mut pickle = PickleWriter::new();
    pickle
        .op(b'(')
        .tensor(&tensor, false)
        .tensor(&tensor, false)
        .op(b't');
    let unpickled = run(&pickle.finish()).unwrap();
    assert_eq!(unpickled.storages.len(), 1);
    assert_eq!(unpickled.storage_index("7"), Some(0));

    let as_half = TensorDesc {
        class: "HalfStorage",
        ..tensor.clone()
    };
    let mut pickle = PickleWriter::new();
    pickle
        .op(b'(')
        .tensor(&tensor, false)
        .tensor(&as_half, false)
        .op(b't');
    let error = run(&pickle.finish()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "storage 7 is declared twice, as 4 x f32 and as 4 x f16"
    );

    let quantized = TensorDesc {
        class: "QInt8Storage",
        ..tensor
    };
    let mut pickle = PickleWriter::new();
    pickle.tensor(&quantized, false);
    let error = run(&pickle.finish()).unwrap_err();
    assert!(
        error.to_string().contains("`torch.QInt8Storage`"),
        "{error}"
    );
}
