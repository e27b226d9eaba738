//! Element types, as PyTorch's legacy typed storages (`torch.FloatStorage`, ...) name them in
//! a pickle.

use std::fmt;

/// The element type of a storage and of the tensors viewing it. Bytes are little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    I16,
    I32,
    I64,
    F16,
    BF16,
    F32,
    F64,
    /// `torch.complex64`: two f32.
    C64,
    /// `torch.complex128`: two f64.
    C128,
}

/// (storage class, dtype), as `torch.storage._dtype_to_storage_type_map` pairs them. The
/// quantized storages (`QInt8Storage`, ...) are left out: they are not plain numbers.
const STORAGE_CLASSES: [(&str, Dtype); 12] = [
    ("BoolStorage", Dtype::Bool),
    ("ByteStorage", Dtype::U8),
    ("CharStorage", Dtype::I8),
    ("ShortStorage", Dtype::I16),
    ("IntStorage", Dtype::I32),
    ("LongStorage", Dtype::I64),
    ("HalfStorage", Dtype::F16),
    ("BFloat16Storage", Dtype::BF16),
    ("FloatStorage", Dtype::F32),
    ("DoubleStorage", Dtype::F64),
    ("ComplexFloatStorage", Dtype::C64),
    ("ComplexDoubleStorage", Dtype::C128),
];

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::Bool | Self::U8 | Self::I8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::I32 | Self::F32 => 4,
            Self::I64 | Self::F64 | Self::C64 => 8,
            Self::C128 => 16,
        }
    }

    /// Short name: `f32`, `bf16`, `i64`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::U8 => "u8",
            Self::I8 => "i8",
            Self::I16 => "i16",
            Self::I32 => "i32",
            Self::I64 => "i64",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::F32 => "f32",
            Self::F64 => "f64",
            Self::C64 => "c64",
            Self::C128 => "c128",
        }
    }

    /// Whether this is a real floating-point type (f16, bf16, f32, f64).
    pub fn is_float(self) -> bool {
        matches!(self, Self::F16 | Self::BF16 | Self::F32 | Self::F64)
    }

    /// The dtype of the `torch.<class>` global a pickle names, e.g. `FloatStorage`.
    pub(crate) fn from_storage_class(class: &str) -> Option<Self> {
        STORAGE_CLASSES
            .iter()
            .find_map(|(name, dtype)| (*name == class).then_some(*dtype))
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_storage_class_maps_to_a_dtype_of_the_right_size() {
        let sizes = [1, 1, 1, 2, 4, 8, 2, 2, 4, 8, 8, 16];
        for ((class, dtype), size) in STORAGE_CLASSES.iter().zip(sizes) {
            assert_eq!(Dtype::from_storage_class(class), Some(*dtype));
            assert_eq!(dtype.size(), size, "{class}");
        }
        assert_eq!(Dtype::from_storage_class("QInt8Storage"), None);
        assert_eq!(Dtype::from_storage_class("UntypedStorage"), None);
        assert_eq!(Dtype::BF16.to_string(), "bf16");
        assert!(Dtype::F16.is_float() && !Dtype::I64.is_float());
    }
}
