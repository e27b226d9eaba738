//! The values a state-dict pickle builds, and the few globals it may call.
//!
//! Objects live in an arena and values refer to them by index: a pickle can share objects
//! (memo) and mutate them after sharing (SETITEMS on a memoised dict), and an arena makes
//! both plain, with no reference counting, and dropping it never recurses however deeply a
//! hostile pickle nests its containers.

use crate::{Dtype, ErrorKind};

/// A pickle value: a scalar, or a reference to an object of the arena.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    /// Wide enough for the legacy format's 80-bit magic number.
    Int(i128),
    Float(f64),
    Obj(usize),
}

/// An object of the arena.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Object {
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// `dict` or `collections.OrderedDict`: items in insertion order. A repeated key is kept
    /// twice here; the last one wins when the state dict is read, as in Python.
    Dict(Vec<(Value, Value)>),
    Global(Global),
    /// A storage, by index into the pickle's storage declarations.
    Storage(usize),
    Tensor(TensorSpec),
}

/// The globals a state dict needs, the only ones a pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    /// `collections.OrderedDict`: `torch.nn.Module.state_dict()`'s type.
    OrderedDict,
    /// `torch._utils._rebuild_tensor(storage, offset, size, stride)`.
    RebuildTensor,
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
    /// backward_hooks[, metadata])`: how `torch.Tensor.__reduce_ex__` pickles a tensor.
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter(data, requires_grad, backward_hooks)`.
    RebuildParameter,
    /// `torch._utils._rebuild_parameter_with_state(data, requires_grad, backward_hooks, state)`.
    RebuildParameterWithState,
    /// `torch.FloatStorage` and the other typed storage classes, in persistent ids.
    StorageType(Dtype),
}

impl Global {
    /// The global `module.name`, or an error naming it when a state dict has no use for it.
    pub(crate) fn resolve(module: &str, name: &str) -> Result<Self, ErrorKind> {
        let global = match (module, name) {
            ("collections", "OrderedDict") => Some(Self::OrderedDict),
            ("torch._utils", "_rebuild_tensor") => Some(Self::RebuildTensor),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Self::RebuildTensorV2),
            ("torch._utils", "_rebuild_parameter") => Some(Self::RebuildParameter),
            ("torch._utils", "_rebuild_parameter_with_state") => {
                Some(Self::RebuildParameterWithState)
            }
            ("torch", class) => Dtype::from_storage_class(class).map(Self::StorageType),
            _ => None,
        };
        global.ok_or_else(|| ErrorKind::UnsupportedGlobal {
            name: format!("{module}.{name}"),
        })
    }
}

/// A tensor as `_rebuild_tensor_v2` describes it: a view of a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorSpec {
    pub(crate) storage: usize,
    pub(crate) offset: u64,
    pub(crate) shape: Vec<u64>,
    pub(crate) strides: Vec<u64>,
}

/// A storage a persistent id declares: `('storage', torch.FloatStorage, key, location, numel)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageDecl {
    pub(crate) key: String,
    pub(crate) dtype: Dtype,
    pub(crate) numel: u64,
}

/// The arena of one pickle.
#[derive(Debug, Default)]
pub(crate) struct Arena {
    objects: Vec<Object>,
}

impl Arena {
    pub(crate) fn push(&mut self, object: Object) -> Value {
        self.objects.push(object);
        Value::Obj(self.objects.len() - 1)
    }

    pub(crate) fn get(&self, value: Value) -> Option<&Object> {
        match value {
            Value::Obj(index) => self.objects.get(index),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, value: Value) -> Option<&mut Object> {
        match value {
            Value::Obj(index) => self.objects.get_mut(index),
            _ => None,
        }
    }

    pub(crate) fn str(&self, value: Value) -> Option<&str> {
        match self.get(value) {
            Some(Object::Str(text)) => Some(text),
            _ => None,
        }
    }

    /// A short description of a value for "found ..." in errors (never recursive).
    pub(crate) fn describe(&self, value: Value) -> String {
        match value {
            Value::None => "None".to_owned(),
            Value::Bool(b) => format!("the bool {}", if b { "True" } else { "False" }),
            Value::Int(i) => format!("the int {i}"),
            Value::Float(x) => format!("the float {x}"),
            Value::Obj(_) => match self.get(value) {
                Some(Object::Str(text)) => format!("the str {:?}", truncate(text)),
                Some(Object::Tuple(items)) => format!("a tuple of {}", items.len()),
                Some(Object::List(items)) => format!("a list of {}", items.len()),
                Some(Object::Dict(items)) => format!("a dict of {}", items.len()),
                Some(Object::Global(global)) => format!("the global {global:?}"),
                Some(Object::Storage(_)) => "a storage".to_owned(),
                Some(Object::Tensor(_)) => "a tensor".to_owned(),
                None => "a dangling reference".to_owned(),
            },
        }
    }
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}
