//! Per-request consistency: `w=` and `r=` as a number of replicas or `one`, `quorum`, `all`,
//! resolved against the number of replicas a key actually has (N, capped at the live nodes).

use crate::error::NodeError;
use crate::front::query::shown;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Level {
    One,
    Quorum,
    All,
    Count(usize),
}

impl Level {
    pub fn parse(s: &str, name: &str) -> Result<Level, NodeError> {
        match s {
            "one" => Ok(Level::One),
            "quorum" => Ok(Level::Quorum),
            "all" => Ok(Level::All),
            // Digits only, no leading zero: `+2` and `002` are refused, as `count=` is.
            n if n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) => {
                Err(NodeError::BadRequest(format!("{name}= must be a number from 1 to the replicas the key has (--replication), or one, quorum or all; got {}", shown(s.as_bytes()))))
            }
            n => match n.parse::<usize>() {
                Ok(k) if k >= 1 => Ok(Level::Count(k)),
                _ => Err(NodeError::BadRequest(format!(
                    "{name}= must be a number from 1 to the replicas the key has (--replication), or one, quorum or all; got {}",
                    shown(s.as_bytes())
                ))),
            },
        }
    }

    /// How many of `replicas` answers are needed; a count above N is an error.
    pub fn needed(self, replicas: usize, name: &str) -> Result<usize, NodeError> {
        let n = replicas.max(1);
        match self {
            Level::One => Ok(1),
            Level::Quorum => Ok(n / 2 + 1),
            Level::All => Ok(n),
            Level::Count(k) if k <= n => Ok(k),
            Level::Count(k) => {
                let replicas = if n == 1 { "replica" } else { "replicas" };
                Err(NodeError::BadRequest(format!("{name}={k} is more than the {n} {replicas} this key has")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_resolve_against_the_replica_count() {
        assert_eq!(Level::parse("quorum", "w").unwrap().needed(3, "w").unwrap(), 2);
        assert_eq!(Level::parse("all", "w").unwrap().needed(3, "w").unwrap(), 3);
        assert_eq!(Level::parse("one", "r").unwrap().needed(3, "r").unwrap(), 1);
        assert_eq!(Level::parse("2", "r").unwrap().needed(3, "r").unwrap(), 2);
        assert_eq!(Level::parse("quorum", "w").unwrap().needed(1, "w").unwrap(), 1);
        assert!(Level::parse("4", "w").unwrap().needed(3, "w").is_err());
        assert!(Level::parse("0", "w").is_err());
        assert!(Level::parse("most", "w").is_err());
        for loose in ["+2", "02", " 2", "2 ", "", "-1"] {
            assert!(Level::parse(loose, "w").is_err(), "{loose:?}");
        }
    }
}
