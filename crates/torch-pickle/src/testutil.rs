//! Test support: writers of small, hand-checkable torch.save files (pickles as Python's
//! pickler writes them at protocol 2, zip archives as PyTorch's writer lays them out, the
//! legacy format's sequence of pickles and raw storages).

/// A tensor to write: `(storage class, storage key, storage numel)` and its view.
#[derive(Debug, Clone)]
pub(crate) struct TensorDesc {
    pub(crate) class: &'static str,
    pub(crate) key: &'static str,
    pub(crate) numel: u64,
    pub(crate) offset: u64,
    pub(crate) shape: Vec<u64>,
    pub(crate) strides: Vec<u64>,
}

impl TensorDesc {
    /// A contiguous f32 tensor that is its whole storage.
    pub(crate) fn f32(key: &'static str, shape: &[u64]) -> Self {
        let mut strides = vec![1; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * shape[i + 1];
        }
        Self {
            class: "FloatStorage",
            key,
            numel: shape.iter().product(),
            offset: 0,
            shape: shape.to_vec(),
            strides,
        }
    }
}

/// A pickle under construction, protocol 2.
pub(crate) struct PickleWriter {
    pub(crate) bytes: Vec<u8>,
}

impl PickleWriter {
    pub(crate) fn new() -> Self {
        Self {
            bytes: vec![0x80, 2],
        }
    }

    pub(crate) fn op(&mut self, op: u8) -> &mut Self {
        self.bytes.push(op);
        self
    }

    pub(crate) fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.bytes.push(b'c');
        self.bytes
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        self
    }

    pub(crate) fn str(&mut self, text: &str) -> &mut Self {
        self.bytes.push(b'X');
        self.bytes
            .extend_from_slice(&(text.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(text.as_bytes());
        self
    }

    /// As pickle.py's `save_long` writes a non-negative int at protocol 2.
    pub(crate) fn int(&mut self, value: u64) -> &mut Self {
        if value < 256 {
            self.bytes.extend_from_slice(&[b'K', value as u8]);
        } else if value < 65536 {
            self.bytes.push(b'M');
            self.bytes.extend_from_slice(&(value as u16).to_le_bytes());
        } else if value < 1 << 31 {
            self.bytes.push(b'J');
            self.bytes.extend_from_slice(&(value as u32).to_le_bytes());
        } else {
            self.bytes.extend_from_slice(&[0x8a, 9]);
            self.bytes.extend_from_slice(&value.to_le_bytes());
            self.bytes.push(0);
        }
        self
    }

    pub(crate) fn tuple_of(&mut self, values: &[u64]) -> &mut Self {
        self.op(b'(');
        for value in values {
            self.int(*value);
        }
        self.op(b't')
    }

    /// `_rebuild_tensor_v2((persistent id), offset, size, stride, False, OrderedDict())`.
    pub(crate) fn tensor(&mut self, tensor: &TensorDesc, legacy: bool) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b'(');
        self.op(b'(')
            .str("storage")
            .global("torch", tensor.class)
            .str(tensor.key)
            .str("cpu")
            .int(tensor.numel);
        if legacy {
            self.op(b'N');
        }
        self.op(b't').op(b'Q');
        self.int(tensor.offset)
            .tuple_of(&tensor.shape)
            .tuple_of(&tensor.strides)
            .op(0x89)
            .global("collections", "OrderedDict")
            .op(b')')
            .op(b'R')
            .op(b't')
            .op(b'R')
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        self.bytes.push(b'.');
        std::mem::take(&mut self.bytes)
    }
}

/// `torch.save(OrderedDict(entries))` with a `_metadata` attribute, as `state_dict()` makes it.
pub(crate) fn state_dict_pickle(entries: &[(&str, TensorDesc)], legacy: bool) -> Vec<u8> {
    let mut pickle = PickleWriter::new();
    pickle
        .global("collections", "OrderedDict")
        .op(b')')
        .op(b'R')
        .op(b'(');
    for (name, tensor) in entries {
        pickle.str(name).tensor(tensor, legacy);
    }
    pickle.op(b'u');
    // BUILD with {'_metadata': OrderedDict({'': {'version': 1}})}.
    pickle
        .op(b'}')
        .str("_metadata")
        .global("collections", "OrderedDict")
        .op(b')')
        .op(b'R')
        .str("")
        .op(b'}')
        .str("version")
        .int(1)
        .op(b's')
        .op(b's')
        .op(b's')
        .op(b'b');
    pickle.finish()
}

/// A zip archive of stored records, each record's data aligned to `align` bytes (0: none)
/// by padding the local header's extra field, as PyTorch's writer does.
pub(crate) fn zip_archive(records: &[(&str, &[u8])], align: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in records {
        let offset = out.len() as u32;
        let header_end = out.len() + 30 + name.len() + 4;
        let padding = if align == 0 {
            0
        } else {
            (align - header_end % align) % align
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&((padding + 4) as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"FB");
        out.extend_from_slice(&(padding as u16).to_le_bytes());
        out.extend(std::iter::repeat_n(b'Z', padding));
        out.extend_from_slice(data);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(records.len() as u16).to_le_bytes());
    out.extend_from_slice(&(records.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// A zip-format torch.save file of `pickle` and the storages `(key, bytes)`.
pub(crate) fn torch_zip(pickle: &[u8], storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let names: Vec<String> = storages
        .iter()
        .map(|(key, _)| format!("model/data/{key}"))
        .collect();
    let mut records: Vec<(&str, &[u8])> =
        vec![("model/data.pkl", pickle), ("model/byteorder", b"little")];
    for (name, (_, bytes)) in names.iter().zip(storages) {
        records.push((name, bytes));
    }
    zip_archive(&records, 64)
}

/// A legacy torch.save file: magic, protocol version, sys_info, `pickle`, the key list, and
/// each storage as an 8-byte element count and its bytes.
pub(crate) fn torch_legacy(pickle: &[u8], storages: &[(&str, u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![0x80, 2, 0x8a, 10];
    out.extend_from_slice(&0x1950_a86a_20f9_469c_fc6cu128.to_le_bytes()[..10]);
    out.push(b'.');
    out.extend_from_slice(&[0x80, 2, b'M', 0xe9, 0x03, b'.']);
    let mut sys_info = PickleWriter::new();
    sys_info
        .op(b'}')
        .str("protocol_version")
        .int(1001)
        .op(b's')
        .str("little_endian")
        .op(0x88)
        .op(b's');
    out.extend_from_slice(&sys_info.finish());
    out.extend_from_slice(pickle);
    let mut keys = PickleWriter::new();
    keys.op(b']').op(b'(');
    for (key, _, _) in storages {
        keys.str(key);
    }
    keys.op(b'e');
    out.extend_from_slice(&keys.finish());
    for (_, numel, bytes) in storages {
        out.extend_from_slice(&numel.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// f32 values as little-endian bytes.
pub(crate) fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
