//! `mlm-train export`: a checkpoint as a Hugging Face model directory that `transformers`
//! loads with no conversion (`AutoModelForMaskedLM`, `pipeline("fill-mask")`, fine-tuning).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use mlm_corpus::DomainTokenizer;
use mlm_trainer::model::load_model_dir;
use mlm_trainer::model::{ExportOptions, export_hf_model_with};

/// Arguments of `mlm-train export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Checkpoint directory (`<output_dir>/checkpoint-N`).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Where to write the Hugging Face directory. It appears whole or not at all (written
    /// beside it, then renamed); an existing directory there is replaced as a whole.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Leave out `bert.pooler.*`. By default the pooler is kept for fine-tuning
    /// (`AutoModelForSequenceClassification` then finds it); transformers 5's
    /// `BertForMaskedLM` has no pooler and lists it as an unexpected key when loading.
    #[arg(long)]
    pub no_pooler: bool,
    #[command(flatten)]
    pub verify: crate::integrity::VerifyFlag,
}

pub fn run(args: &ExportArgs) -> Result<()> {
    crate::integrity::check_model_dir(&args.checkpoint, args.verify)?;
    let built = load_model_dir(&args.checkpoint, tch::Device::Cpu)
        .with_context(|| format!("loading {}", args.checkpoint.display()))?;
    let tokenizer = DomainTokenizer::load(&args.checkpoint, None)
        .with_context(|| format!("loading the tokenizer of {}", args.checkpoint.display()))?;
    crate::fill_mask::check_loaded(&args.checkpoint, &tokenizer, &built)?;
    let staging = Staging::beside(&args.out)?;
    let options = ExportOptions {
        include_pooler: !args.no_pooler,
    };
    export_hf_model_with(&built.vs, &built.config, &staging.temp, options)
        .with_context(|| format!("writing the model to {}", staging.temp.display()))?;
    mlm_faults::fault_point("export.mid-export");
    tokenizer
        .write_hf_files(&staging.temp, built.config.max_sequence_length() as usize)
        .with_context(|| format!("writing the tokenizer to {}", staging.temp.display()))?;
    staging.commit()?;
    eprintln!(
        "exported {} to {}",
        args.checkpoint.display(),
        args.out.display()
    );
    Ok(())
}

/// An export written into a hidden directory beside `--out` and renamed onto it once
/// complete (with its `integrity.json`), so that `--out` is a whole export or absent
/// whenever the process dies. Leftovers of killed exports are removed first.
struct Staging {
    out: PathBuf,
    temp: PathBuf,
    aside: PathBuf,
}

impl Staging {
    fn beside(out: &Path) -> Result<Self> {
        let name = out
            .file_name()
            .with_context(|| format!("--out {} names no directory", out.display()))?
            .to_string_lossy()
            .into_owned();
        let parent = match out.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let staging = Self {
            out: out.to_path_buf(),
            temp: parent.join(format!(".{name}.tmp-export")),
            aside: parent.join(format!(".{name}.old-export")),
        };
        for leftover in [&staging.temp, &staging.aside] {
            if leftover.exists() {
                std::fs::remove_dir_all(leftover)
                    .with_context(|| format!("removing {}", leftover.display()))?;
            }
        }
        std::fs::create_dir(&staging.temp)
            .with_context(|| format!("creating {}", staging.temp.display()))?;
        Ok(staging)
    }

    /// Writes `integrity.json`, syncs, and renames the export into place.
    fn commit(self) -> Result<()> {
        mlm_integrity::write_for_dir(&self.temp)
            .with_context(|| format!("writing the integrity manifest of {}", self.out.display()))?;
        sync_files(&self.temp)?;
        mlm_faults::fault_point("export.before-rename");
        let replacing = self.out.exists();
        if replacing {
            std::fs::rename(&self.out, &self.aside)
                .with_context(|| format!("moving the previous {} aside", self.out.display()))?;
        }
        std::fs::rename(&self.temp, &self.out)
            .with_context(|| format!("renaming the export to {}", self.out.display()))?;
        if replacing {
            std::fs::remove_dir_all(&self.aside)
                .with_context(|| format!("removing {}", self.aside.display()))?;
        }
        Ok(())
    }
}

/// fsyncs every file of `dir` and the directory, so the rename publishes complete files.
fn sync_files(dir: &Path) -> Result<()> {
    let sync = |path: &Path| {
        std::fs::File::open(path)
            .and_then(|file| file.sync_all())
            .with_context(|| format!("syncing {}", path.display()))
    };
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if path.is_file() {
            sync(&path)?;
        }
    }
    sync(dir)
}
