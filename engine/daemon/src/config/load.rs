//! The layered loader: defaults < file < `FPN_*` environment < flags.
//!
//! Every layer above the defaults is first flattened into dotted key paths
//! (`window.duration_ms`) and type-checked against the key list, which is the set of leaves of
//! the serialized defaults. So the env variable names, the `--set` keys and the file keys can
//! never drift from the [`Config`] struct. Then the defaults for the resulting
//! [`DefaultsBasis`] are built, the layers are laid over them, and the result is validated.
//! Errors from every step are collected; nothing is returned half-configured.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::validate::{INTAKES_MAX, RECORDS_MAX_MAX, SHARDS_MAX, Settings, validate};
use super::{Config, ConfigError, ConfigErrors, DefaultsBasis, Origin, Profile};
use crate::cores::{CpuSet, PerRole, Role};

/// Environment variables with the `FPN_` prefix that are not configuration keys.
pub const NON_KEY_VARS: &[&str] = &["FPN_CONFIG"];

/// One command-line flag that sets a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flag {
    /// `--set section.key=value`, the text after `--set`.
    Set(String),
    /// A dedicated flag such as `--data-dir`: its name, the key it sets, the value.
    Key { flag: &'static str, key: &'static str, value: String },
}

/// Everything the loader reads, gathered by the caller (so tests inject it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    /// The config file's path and contents, if one was given.
    pub file: Option<(PathBuf, String)>,
    /// The process environment. Only names starting with `FPN_` are looked at.
    pub env: Vec<(String, String)>,
    /// Flags in command-line order; a later flag for the same key wins.
    pub flags: Vec<Flag>,
}

impl Inputs {
    /// Reads the config file named by `config_path`, or else by `FPN_CONFIG` in `env`.
    pub fn gather(
        config_path: Option<PathBuf>,
        env: Vec<(String, String)>,
        flags: Vec<Flag>,
    ) -> Result<Inputs, ConfigErrors> {
        let path = config_path
            .or_else(|| env.iter().find(|(k, _)| k == "FPN_CONFIG").map(|(_, v)| PathBuf::from(v)));
        let file = match path {
            None => None,
            Some(path) => match std::fs::read_to_string(&path) {
                Ok(text) => Some((path, text)),
                Err(e) => {
                    return Err(ConfigErrors(vec![ConfigError::File {
                        path,
                        message: format!("cannot read: {e}"),
                    }]));
                }
            },
        };
        Ok(Inputs { file, env, flags })
    }
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The merged configuration, as an operator would write it.
    pub config: Config,
    /// The same, validated and typed. This is what the runtime uses.
    pub settings: Settings,
    /// Which layer each key's value came from.
    pub origins: BTreeMap<String, Origin>,
    /// Legal but probably unintended choices (a spinning role sharing its CPU).
    pub warnings: Vec<String>,
    /// The CPUs the core map was checked against.
    pub cpus: CpuSet,
    /// Why each role's CPU list is what it is: the default map's reason, or the layer that
    /// set `cores.<role>`.
    pub placement: PerRole<String>,
}

impl Loaded {
    /// The merged configuration as TOML, headed by comments with the resolved core map and
    /// the keys not left at their defaults. Loading this text as a file gives the same config.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        out.push_str("# flashpointd merged configuration (defaults < file < FPN_* env < flags)\n");
        let set: Vec<_> = self.origins.iter().filter(|(_, o)| **o != Origin::Default).collect();
        if !set.is_empty() {
            out.push_str("# set explicitly:\n");
            for (key, origin) in set {
                out.push_str(&format!("#   {key} ({origin})\n"));
            }
        }
        let s = &self.settings;
        out.push_str(&format!(
            "# allowed CPUs: {} ({})\n# resolved core map ({} profile: {} intake(s), {} builder shard(s), {} build worker(s) each), what runs on each CPU and why:\n",
            self.cpus,
            self.cpus.len(),
            s.profile.as_str(),
            s.intakes_n(),
            s.builder.shards,
            s.builder.workers,
        ));
        for line in s.core_map.explain(&self.placement).lines() {
            out.push_str(&format!("#   {line}\n"));
        }
        out.push('\n');
        out.push_str(&toml::to_string_pretty(&self.config).expect("Config serializes to TOML"));
        out
    }
}

/// The type of one key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Str,
    Bool,
    CpuList,
}

/// Every key as `section.key`, with its type, from the serialized defaults.
fn schema() -> BTreeMap<String, Kind> {
    let defaults = Config::defaults(DefaultsBasis::default(), &CpuSet::new([0]));
    let table = toml::Table::try_from(&defaults).expect("Config serializes to a table");
    let mut keys = BTreeMap::new();
    for (section, value) in table {
        let toml::Value::Table(section_table) = value else {
            panic!("top-level entry {section} of Config is not a section");
        };
        for (key, value) in section_table {
            let kind = match value {
                toml::Value::Integer(_) => Kind::Int,
                toml::Value::String(_) => Kind::Str,
                toml::Value::Boolean(_) => Kind::Bool,
                toml::Value::Array(_) => Kind::CpuList,
                other => panic!("key {section}.{key} has unsupported type {}", other.type_str()),
            };
            keys.insert(format!("{section}.{key}"), kind);
        }
    }
    keys
}

/// Every configuration key as `section.key`, sorted.
pub fn key_paths() -> Vec<String> {
    schema().into_keys().collect()
}

/// The environment variable for a key: `FPN_` then the path upper-cased with `.` as `_`.
/// `window.duration_ms` is `FPN_WINDOW_DURATION_MS`. Section names hold no `_`, so the mapping
/// is one-to-one.
pub fn env_var_name(key: &str) -> String {
    format!("FPN_{}", key.replace('.', "_").to_ascii_uppercase())
}

fn check_kind(kind: Kind, value: &toml::Value) -> Result<(), String> {
    let non_negative = |v: &toml::Value| matches!(v, toml::Value::Integer(i) if *i >= 0);
    let ok = match kind {
        Kind::Int => non_negative(value),
        Kind::Str => value.is_str(),
        Kind::Bool => value.is_bool(),
        Kind::CpuList => value.as_array().is_some_and(|a| a.iter().all(non_negative)),
    };
    if ok { Ok(()) } else { Err(expected(kind).to_string()) }
}

fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Int => "expected a non-negative integer",
        Kind::Str => "expected a quoted string (numbers such as fee_rate are written \"0.1\")",
        Kind::Bool => "expected true or false",
        Kind::CpuList => "expected a list of CPU ids, e.g. [0, 1] (in env or --set: 0,1)",
    }
}

/// Parses text from an env variable or a flag into a value of `kind`.
fn value_from_text(kind: Kind, text: &str) -> Result<toml::Value, String> {
    let int = |s: &str| -> Option<i64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<i64>().ok()
    };
    match kind {
        Kind::Int => int(text).map(toml::Value::Integer).ok_or_else(|| expected(kind).to_string()),
        Kind::Str => Ok(toml::Value::String(text.to_string())),
        Kind::Bool => match text {
            "true" => Ok(toml::Value::Boolean(true)),
            "false" => Ok(toml::Value::Boolean(false)),
            _ => Err(expected(kind).to_string()),
        },
        Kind::CpuList => {
            let inner = text.trim();
            let inner = inner.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(inner);
            if inner.trim().is_empty() {
                return Ok(toml::Value::Array(Vec::new()));
            }
            inner
                .split(',')
                .map(|s| int(s.trim()).map(toml::Value::Integer))
                .collect::<Option<Vec<_>>>()
                .map(toml::Value::Array)
                .ok_or_else(|| expected(kind).to_string())
        }
    }
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let best = candidates.map(|c| (distance(name, c), c)).min();
    match best {
        Some((d, c)) if d <= 3 => format!("did you mean {c}?"),
        _ => "see docs/config.md for the list".to_string(),
    }
}

/// The values set above the defaults, with where each came from.
type Overlay = BTreeMap<String, (toml::Value, Origin)>;

fn overlay_file(
    path: &std::path::Path,
    text: &str,
    schema: &BTreeMap<String, Kind>,
    overlay: &mut Overlay,
    errors: &mut Vec<ConfigError>,
) {
    let origin = Origin::File(path.to_path_buf());
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            errors.push(ConfigError::File {
                path: path.to_path_buf(),
                message: e.to_string().trim_end().to_string(),
            });
            return;
        }
    };
    let sections: Vec<String> = {
        let mut s: Vec<String> = schema.keys().map(|k| k.split('.').next().unwrap().to_string()).collect();
        s.dedup();
        s
    };
    for (section, value) in table {
        let toml::Value::Table(entries) = value else {
            let hint = if sections.contains(&section) {
                format!("[{section}] is a section, not a value")
            } else {
                format!(
                    "keys belong in a section; {}",
                    suggest(&section, sections.iter().map(String::as_str))
                )
            };
            errors.push(ConfigError::Unknown {
                what: format!("unknown key `{section}`"),
                origin: origin.clone(),
                hint,
            });
            continue;
        };
        if !sections.contains(&section) {
            errors.push(ConfigError::Unknown {
                what: format!("unknown section [{section}]"),
                origin: origin.clone(),
                hint: suggest(&section, sections.iter().map(String::as_str)),
            });
            continue;
        }
        for (key, value) in entries {
            let path = format!("{section}.{key}");
            let Some(&kind) = schema.get(&path) else {
                errors.push(ConfigError::Unknown {
                    what: format!("unknown key `{path}`"),
                    origin: origin.clone(),
                    hint: suggest(&path, schema.keys().map(String::as_str)),
                });
                continue;
            };
            match check_kind(kind, &value) {
                Ok(()) => {
                    overlay.insert(path, (value, origin.clone()));
                }
                Err(problem) => errors.push(ConfigError::Invalid {
                    key: path,
                    value: value.to_string(),
                    origin: origin.clone(),
                    problem,
                }),
            }
        }
    }
}

fn overlay_text(
    key: &str,
    text: &str,
    origin: Origin,
    schema: &BTreeMap<String, Kind>,
    overlay: &mut Overlay,
    errors: &mut Vec<ConfigError>,
) {
    let Some(&kind) = schema.get(key) else {
        errors.push(ConfigError::Unknown {
            what: format!("unknown key `{key}`"),
            origin,
            hint: suggest(key, schema.keys().map(String::as_str)),
        });
        return;
    };
    match value_from_text(kind, text) {
        Ok(value) => {
            overlay.insert(key.to_string(), (value, origin));
        }
        Err(problem) => errors.push(ConfigError::Invalid {
            key: key.to_string(),
            value: format!("{text:?}"),
            origin,
            problem,
        }),
    }
}

/// Loads and validates the configuration from `inputs`, checking the core map against `cpus`.
pub fn load(inputs: &Inputs, cpus: &CpuSet) -> Result<Loaded, ConfigErrors> {
    let schema = schema();
    let mut overlay = Overlay::new();
    let mut errors = Vec::new();

    if let Some((path, text)) = &inputs.file {
        overlay_file(path, text, &schema, &mut overlay, &mut errors);
    }

    let env_keys: BTreeMap<String, &String> = schema.keys().map(|k| (env_var_name(k), k)).collect();
    let mut env: Vec<&(String, String)> = inputs.env.iter().filter(|(k, _)| k.starts_with("FPN_")).collect();
    env.sort();
    for (name, text) in env {
        if NON_KEY_VARS.contains(&name.as_str()) {
            continue;
        }
        match env_keys.get(name) {
            Some(key) => {
                overlay_text(key, text, Origin::Env(name.clone()), &schema, &mut overlay, &mut errors)
            }
            None => errors.push(ConfigError::Unknown {
                what: "unknown variable".into(),
                origin: Origin::Env(name.clone()),
                hint: suggest(name, env_keys.keys().map(String::as_str).chain(NON_KEY_VARS.iter().copied())),
            }),
        }
    }

    for flag in &inputs.flags {
        match flag {
            Flag::Set(text) => match text.split_once('=') {
                Some((key, value)) => overlay_text(
                    key.trim(),
                    value,
                    Origin::Flag("--set".into()),
                    &schema,
                    &mut overlay,
                    &mut errors,
                ),
                None => errors.push(ConfigError::Unknown {
                    what: format!("--set {text:?} has no `=`"),
                    origin: Origin::Flag("--set".into()),
                    hint: "write --set section.key=value, e.g. --set window.duration_ms=10".into(),
                }),
            },
            Flag::Key { flag, key, value } => {
                overlay_text(key, value, Origin::Flag((*flag).into()), &schema, &mut overlay, &mut errors)
            }
        }
    }

    // Keys whose defaults follow from other keys: read them from the layers first. An
    // invalid value here falls back to the plain default and is reported by validation.
    let basis_default = DefaultsBasis::default();
    let int_of = |key: &str| overlay.get(key).and_then(|(v, _)| v.as_integer()).map(|i| i as u64);
    let basis = DefaultsBasis {
        profile: overlay
            .get("engine.profile")
            .and_then(|(v, _)| v.as_str())
            .and_then(Profile::parse)
            .unwrap_or(basis_default.profile),
        records_max: int_of("window.records_max")
            .filter(|n| (1..=RECORDS_MAX_MAX).contains(n))
            .unwrap_or(basis_default.records_max),
        // A layer that lists the intake CPUs and not their count runs one intake per CPU.
        intakes: int_of("engine.intakes").filter(|n| (1..=INTAKES_MAX).contains(n)).or_else(|| {
            let listed = overlay.get("cores.intake").and_then(|(v, _)| v.as_array()).map(Vec::len);
            listed.filter(|n| (1..=INTAKES_MAX as usize).contains(n)).map(|n| n as u64)
        }),
        shards: int_of("builder.shards").filter(|n| (1..=SHARDS_MAX).contains(n)),
        workers: int_of("builder.workers").filter(|n| *n <= fpn_engine::shard::WORKERS_PER_SHARD_MAX as u64),
        log_durability_none: overlay.get("log.durability").and_then(|(v, _)| v.as_str()) == Some("none"),
    };
    let layout = basis.layout(cpus);

    let mut table =
        toml::Table::try_from(Config::defaults(basis, cpus)).expect("Config serializes to a table");
    let mut origins: BTreeMap<String, Origin> = schema.keys().map(|k| (k.clone(), Origin::Default)).collect();
    for (key, (value, origin)) in overlay {
        let (section, name) = key.split_once('.').expect("schema keys are dotted");
        table
            .get_mut(section)
            .and_then(toml::Value::as_table_mut)
            .expect("schema sections exist in the defaults")
            .insert(name.to_string(), value);
        origins.insert(key, origin);
    }
    let config: Config =
        toml::Value::Table(table).try_into().expect("type-checked values deserialize into Config");

    let placement = PerRole::from_fn(|role: Role| match origins.get(&format!("cores.{role}")) {
        Some(origin) if *origin != Origin::Default => format!("cores.{role} set ({origin})"),
        _ => layout.why.get(role).clone(),
    });
    match validate(&config, &origins, cpus) {
        Ok((settings, warnings)) if errors.is_empty() => {
            Ok(Loaded { config, settings, origins, warnings, cpus: cpus.clone(), placement })
        }
        Ok(_) => Err(ConfigErrors(errors)),
        Err(more) => {
            errors.extend(more);
            Err(ConfigErrors(errors))
        }
    }
}
