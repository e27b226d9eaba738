//! The two splits of a prepared corpus.

use serde::{Deserialize, Serialize};

/// Training or held-out data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Validation,
}

impl Split {
    pub const ALL: [Split; 2] = [Split::Train, Split::Validation];

    /// `train` / `validation`: the shard file prefix (the split names `datasets` recognises).
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
        }
    }

    /// `train-00003.parquet`
    pub fn shard_name(self, index: usize) -> String {
        format!("{}-{index:05}.parquet", self.as_str())
    }
}

/// One value per split, by name (serialised as `{"train": .., "validation": ..}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splits<T> {
    pub train: T,
    pub validation: T,
}

impl<T> Splits<T> {
    /// The value of each split computed from the split.
    pub fn from_fn(mut f: impl FnMut(Split) -> T) -> Self {
        Self {
            train: f(Split::Train),
            validation: f(Split::Validation),
        }
    }

    pub fn get(&self, split: Split) -> &T {
        match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
        }
    }

    pub fn get_mut(&mut self, split: Split) -> &mut T {
        match split {
            Split::Train => &mut self.train,
            Split::Validation => &mut self.validation,
        }
    }

    /// `(split, value)` pairs, train first.
    pub fn iter(&self) -> impl Iterator<Item = (Split, &T)> {
        [
            (Split::Train, &self.train),
            (Split::Validation, &self.validation),
        ]
        .into_iter()
    }

    /// `(split, value)` pairs, train first.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Split, &mut T)> {
        [
            (Split::Train, &mut self.train),
            (Split::Validation, &mut self.validation),
        ]
        .into_iter()
    }

    /// Applies `f` to both values (and their split).
    pub fn map<U>(self, mut f: impl FnMut(Split, T) -> U) -> Splits<U> {
        Splits {
            train: f(Split::Train, self.train),
            validation: f(Split::Validation, self.validation),
        }
    }

    /// Both values by reference.
    pub fn each_ref(&self) -> Splits<&T> {
        Splits {
            train: &self.train,
            validation: &self.validation,
        }
    }
}

impl Splits<u64> {
    /// The two counts added.
    pub fn total(&self) -> u64 {
        self.train + self.validation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_addressed_by_name() {
        let mut counts = Splits::from_fn(|s| s.as_str().len() as u64);
        assert_eq!(
            counts,
            Splits {
                train: 5,
                validation: 10
            }
        );
        *counts.get_mut(Split::Validation) += 1;
        assert_eq!(*counts.get(Split::Validation), 11);
        assert_eq!(counts.total(), 16);
        let order: Vec<Split> = counts.iter().map(|(s, _)| s).collect();
        assert_eq!(order, Split::ALL);
        for (_, n) in counts.iter_mut() {
            *n *= 2;
        }
        assert_eq!(
            counts.map(|_, n| n + 1),
            Splits {
                train: 11,
                validation: 23
            }
        );
        assert_eq!(
            serde_json::to_string(&counts).unwrap(),
            r#"{"train":10,"validation":22}"#
        );
    }
}
