//! The opcodes that would run code in Python (REDUCE, BUILD, BINPERSID), each reduced to the
//! fixed meaning it has in a state dict.

use std::ops::RangeInclusive;

use super::Machine;
use super::objects::{Global, Object, StorageDecl, TensorSpec, Value};
use crate::ErrorKind;

impl Machine<'_> {
    /// REDUCE: `callable(*args)`, for the globals of [`Global`] only.
    pub(super) fn reduce(&mut self) -> Result<(), ErrorKind> {
        let args_value = self.pop()?;
        let callable = self.top()?;
        let args = match self.arena.get(args_value) {
            Some(Object::Tuple(items)) => items.clone(),
            _ => return Err(self.unexpected("an argument tuple (REDUCE)", args_value)),
        };
        let global = match self.arena.get(callable) {
            Some(Object::Global(global)) => *global,
            _ => return Err(self.unexpected("a global to call (REDUCE)", callable)),
        };
        let result = match global {
            Global::OrderedDict => self.ordered_dict(&args)?,
            Global::RebuildTensor => self.rebuild_tensor(&args, 4..=4)?,
            Global::RebuildTensorV2 => self.rebuild_tensor(&args, 6..=7)?,
            Global::RebuildParameter => self.parameter(&args, 3)?,
            Global::RebuildParameterWithState => self.parameter(&args, 4)?,
            Global::StorageType(dtype) => {
                return Err(self.error(
                    "a function to call (REDUCE)",
                    format!("the {dtype} storage class, which only persistent ids use"),
                ));
            }
        };
        if let Some(top) = self.stack.last_mut() {
            *top = result;
        }
        Ok(())
    }

    /// `OrderedDict()` or `OrderedDict(pairs)`.
    fn ordered_dict(&mut self, args: &[Value]) -> Result<Value, ErrorKind> {
        let mut items = Vec::new();
        if let [pairs] = args {
            let pairs = match self.arena.get(*pairs) {
                Some(Object::List(pairs) | Object::Tuple(pairs)) => pairs.clone(),
                _ => return Err(self.unexpected("a sequence of (key, value) pairs", *pairs)),
            };
            for pair in pairs {
                match self.arena.get(pair) {
                    Some(Object::Tuple(kv) | Object::List(kv)) if kv.len() == 2 => {
                        items.push((kv[0], kv[1]));
                    }
                    _ => return Err(self.unexpected("a (key, value) pair", pair)),
                }
            }
        } else if !args.is_empty() {
            return Err(self.error(
                "OrderedDict() or OrderedDict(pairs)",
                format!("{} arguments", args.len()),
            ));
        }
        Ok(self.arena.push(Object::Dict(items)))
    }

    /// `_rebuild_tensor(storage, offset, size, stride)` and `_rebuild_tensor_v2(..., requires_grad,
    /// backward_hooks[, metadata])`. requires_grad and the hooks (always empty: torch never
    /// saves hooks) do not matter for weights.
    fn rebuild_tensor(
        &mut self,
        args: &[Value],
        arity: RangeInclusive<usize>,
    ) -> Result<Value, ErrorKind> {
        if !arity.contains(&args.len()) {
            return Err(self.error(
                &format!("{arity:?} arguments to rebuild a tensor"),
                format!("{}", args.len()),
            ));
        }
        let storage = match self.arena.get(args[0]) {
            Some(Object::Storage(index)) => *index,
            _ => return Err(self.unexpected("a storage (persistent id)", args[0])),
        };
        let offset = self.uint(args[1], "a storage offset")?;
        let shape = self.uint_tuple(args[2], "a size tuple")?;
        let strides = self.uint_tuple(args[3], "a stride tuple")?;
        if shape.len() != strides.len() {
            return Err(self.error(
                &format!("as many strides as sizes ({})", shape.len()),
                format!("{}", strides.len()),
            ));
        }
        if let Some(&metadata) = args.get(6) {
            self.check_tensor_metadata(metadata)?;
        }
        Ok(self.arena.push(Object::Tensor(TensorSpec {
            storage,
            offset,
            shape,
            strides,
        })))
    }

    /// `get_tensor_metadata`: the conjugate and negative bits. Set, the stored numbers are not
    /// the tensor's values; a state dict never has them.
    fn check_tensor_metadata(&self, metadata: Value) -> Result<(), ErrorKind> {
        let clear = match self.arena.get(metadata) {
            Some(Object::Dict(items)) => {
                items.iter().all(|(_, value)| *value == Value::Bool(false))
            }
            _ => metadata == Value::None,
        };
        if clear {
            Ok(())
        } else {
            Err(self.unexpected("no tensor metadata (conjugate or negative bit)", metadata))
        }
    }

    /// `_rebuild_parameter(data, ...)`: a `Parameter` is its tensor here.
    fn parameter(&self, args: &[Value], arity: usize) -> Result<Value, ErrorKind> {
        match args.first() {
            Some(&data) if args.len() == arity => match self.arena.get(data) {
                Some(Object::Tensor(_)) => Ok(data),
                _ => Err(self.unexpected("a tensor (the parameter's data)", data)),
            },
            _ => Err(self.error(
                &format!("{arity} arguments to rebuild a parameter"),
                format!("{}", args.len()),
            )),
        }
    }

    /// BUILD: `state_dict()` sets `_metadata` (module versions) as an attribute of its
    /// `OrderedDict`. Attributes are not tensors: ignored.
    pub(super) fn build(&mut self) -> Result<(), ErrorKind> {
        let _state = self.pop()?;
        let target = self.top()?;
        match self.arena.get(target) {
            Some(Object::Dict(_)) => Ok(()),
            _ => Err(self.unexpected("an OrderedDict to set attributes of (BUILD)", target)),
        }
    }

    /// BINPERSID: torch's persistent ids `('storage', torch.FloatStorage, key, location, numel)`
    /// (the legacy format adds a sixth item, view metadata, always None since PyTorch 1.0).
    pub(super) fn persistent_load(&mut self) -> Result<(), ErrorKind> {
        const EXPECTED: &str = "a persistent id ('storage', storage type, key, location, numel)";
        let pid = self.pop()?;
        let items = match self.arena.get(pid) {
            Some(Object::Tuple(items)) if (5..=6).contains(&items.len()) => items.clone(),
            _ => return Err(self.unexpected(EXPECTED, pid)),
        };
        if self.arena.str(items[0]) != Some("storage") {
            return Err(self.unexpected(EXPECTED, items[0]));
        }
        let dtype = match self.arena.get(items[1]) {
            Some(Object::Global(Global::StorageType(dtype))) => *dtype,
            _ => return Err(self.unexpected("a storage type (torch.FloatStorage, ...)", items[1])),
        };
        let key = match self.arena.str(items[2]) {
            Some(key) => key.to_owned(),
            None => return Err(self.unexpected("a storage key (str)", items[2])),
        };
        let numel = self.uint(items[4], "a storage's element count")?;
        if let Some(&view) = items.get(5)
            && view != Value::None
        {
            return Err(self.unexpected("no storage view (PyTorch < 1.0 files)", view));
        }
        let index = self.declare(StorageDecl { key, dtype, numel })?;
        let value = self.arena.push(Object::Storage(index));
        self.stack.push(value);
        Ok(())
    }

    /// The index of a storage; each key is one storage, however many tensors view it.
    fn declare(&mut self, storage: StorageDecl) -> Result<usize, ErrorKind> {
        if let Some(&index) = self.storage_keys.get(&storage.key) {
            let first = &self.storages[index];
            if (first.dtype, first.numel) != (storage.dtype, storage.numel) {
                return Err(ErrorKind::StorageConflict {
                    key: storage.key,
                    first: format!("{} x {}", first.numel, first.dtype),
                    second: format!("{} x {}", storage.numel, storage.dtype),
                });
            }
            return Ok(index);
        }
        self.storage_keys
            .insert(storage.key.clone(), self.storages.len());
        self.storages.push(storage);
        Ok(self.storages.len() - 1)
    }

    fn uint(&self, value: Value, expected: &str) -> Result<u64, ErrorKind> {
        match value {
            Value::Int(int) => u64::try_from(int).map_err(|_| self.unexpected(expected, value)),
            _ => Err(self.unexpected(expected, value)),
        }
    }

    fn uint_tuple(&self, value: Value, expected: &str) -> Result<Vec<u64>, ErrorKind> {
        match self.arena.get(value) {
            Some(Object::Tuple(items)) => items
                .iter()
                .map(|item| self.uint(*item, expected))
                .collect(),
            _ => Err(self.unexpected(expected, value)),
        }
    }
}
