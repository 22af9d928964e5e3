//! The text catalogue: every sentence the rescue guide, `mi-flash recovery` and the phone-mode
//! hints show, in English and Bahasa Indonesia, kept in one place (`text/en.toml`,
//! `text/id.toml`, compiled into the binary). Code refers to sentences by key only.
//!
//! Placeholders are written `{name}` and filled by [`Catalogue::fill`]. Both files must have the
//! same keys with the same placeholders: a unit test enforces it, so a missing translation
//! fails the build's tests rather than showing up in front of a user.

use std::collections::BTreeMap;

const EN: &str = include_str!("text/en.toml");
const ID: &str = include_str!("text/id.toml");

/// A language of the guide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Id,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Id];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Id => "id",
        }
    }

    /// `en`, `id` (and the usual spellings of a locale: `id_ID.UTF-8`, `in`, `en-GB`).
    pub fn parse(text: &str) -> Option<Lang> {
        let t = text.trim().to_ascii_lowercase();
        let base = t.split(['_', '-', '.', '@']).next().unwrap_or_default();
        match base {
            "en" => Some(Lang::En),
            // `in` is the old ISO code for Indonesian; Java and some Android builds still use it.
            "id" | "in" => Some(Lang::Id),
            _ => None,
        }
    }

    /// The language of the user's locale: the first of `LC_ALL`, `LC_MESSAGES`, `LANGUAGE`,
    /// `LANG` that is set; Indonesian locales give [`Lang::Id`], everything else English.
    pub fn from_env() -> Lang {
        Lang::from_locale_vars(|name| std::env::var(name).ok())
    }

    pub fn from_locale_vars(get: impl Fn(&str) -> Option<String>) -> Lang {
        for name in ["LC_ALL", "LC_MESSAGES", "LANGUAGE", "LANG"] {
            if let Some(value) = get(name).filter(|v| !v.is_empty()) {
                // LANGUAGE may list several (`id:en`); the first one wins.
                let first = value.split(':').next().unwrap_or_default();
                return Lang::parse(first).unwrap_or(Lang::En);
            }
        }
        Lang::En
    }
}

/// A broken catalogue file (caught by the unit tests before release).
#[derive(Debug, thiserror::Error)]
#[error("the {lang} text catalogue is broken: {message}")]
pub struct CatalogueError {
    pub lang: &'static str,
    pub message: String,
}

/// The sentences of one language, by dotted key (`remedy.flash-rom.title`).
#[derive(Debug, Clone)]
pub struct Catalogue {
    lang: Lang,
    entries: BTreeMap<String, String>,
}

impl Catalogue {
    pub fn load(lang: Lang) -> Result<Catalogue, CatalogueError> {
        let source = match lang {
            Lang::En => EN,
            Lang::Id => ID,
        };
        let value: toml::Table =
            toml::from_str(source).map_err(|e| CatalogueError { lang: lang.code(), message: e.to_string() })?;
        let mut entries = BTreeMap::new();
        flatten("", &value, &mut entries).map_err(|message| CatalogueError { lang: lang.code(), message })?;
        Ok(Catalogue { lang, entries })
    }

    pub fn lang(&self) -> Lang {
        self.lang
    }

    /// The sentence for `key`. A key the catalogue lacks shows as `[key]` rather than
    /// stopping the program; the tests make sure no such key is used.
    pub fn get(&self, key: &str) -> String {
        match self.entries.get(key) {
            Some(v) => v.trim_matches('\n').to_string(),
            None => {
                log::warn!("missing {} text for `{key}`", self.lang.code());
                format!("[{key}]")
            }
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The sentence for `key` with each `{name}` replaced by its value.
    pub fn fill(&self, key: &str, args: &[(&str, &str)]) -> String {
        let mut text = self.get(key);
        for (name, value) in args {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            toml::Value::Table(t) => flatten(&key, t, out)?,
            other => return Err(format!("`{key}` is a {}, not text", other.type_str())),
        }
    }
    Ok(())
}

/// The `{placeholder}` names used in a sentence, sorted.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) if after[..end].chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && end > 0 => {
                names.push(after[..end].to_string());
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_load_and_have_the_same_keys_and_placeholders() {
        let en = Catalogue::load(Lang::En).unwrap();
        let id = Catalogue::load(Lang::Id).unwrap();
        let en_keys: Vec<&str> = en.keys().collect();
        let id_keys: Vec<&str> = id.keys().collect();
        let missing_in_id: Vec<_> = en_keys.iter().filter(|k| !id.has(k)).collect();
        let missing_in_en: Vec<_> = id_keys.iter().filter(|k| !en.has(k)).collect();
        assert!(missing_in_id.is_empty(), "not translated into Bahasa Indonesia: {missing_in_id:?}");
        assert!(missing_in_en.is_empty(), "not in English: {missing_in_en:?}");
        for k in en_keys {
            assert_eq!(placeholders(&en.get(k)), placeholders(&id.get(k)), "placeholders of `{k}` differ");
            assert!(!id.get(k).trim().is_empty(), "`{k}` is empty in id");
            assert!(!en.get(k).trim().is_empty(), "`{k}` is empty in en");
        }
        assert!(en.keys().count() > 100);
    }

    #[test]
    fn fill_and_missing_keys() {
        let en = Catalogue::load(Lang::En).unwrap();
        assert_eq!(en.fill("ui.option_heading", &[("n", "2"), ("total", "4"), ("title", "X")]), "Option 2 of 4: X");
        assert_eq!(en.get("no.such.key"), "[no.such.key]");
        assert_eq!(placeholders("a {b} {c} {b} {not a name} {}"), vec!["b", "c"]);
    }

    #[test]
    fn locale_picks_the_language() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(Lang::from_locale_vars(env(&[("LANG", "id_ID.UTF-8")])), Lang::Id);
        assert_eq!(Lang::from_locale_vars(env(&[("LANG", "id_ID.UTF-8"), ("LC_ALL", "C")])), Lang::En);
        assert_eq!(Lang::from_locale_vars(env(&[("LANGUAGE", "in:en")])), Lang::Id);
        assert_eq!(Lang::from_locale_vars(env(&[("LANG", "de_DE.UTF-8")])), Lang::En);
        assert_eq!(Lang::from_locale_vars(env(&[])), Lang::En);
        assert_eq!(Lang::parse("ID"), Some(Lang::Id));
        assert_eq!(Lang::parse("en-GB"), Some(Lang::En));
        assert_eq!(Lang::parse("fr"), None);
    }
}
