//! The `/proofs` admin routes (`docs/daemon.md`, "Prover pool"):
//!
//! | route | answer |
//! |---|---|
//! | `POST /proofs` | body `{"window_id": N}` (a window among the journal's newest lines) or `{"witness": {...}}`: **202** `{"id", "status": "pending"}` |
//! | `GET /proofs/vk` | the verifying key, snarkjs `verification_key.json` |
//! | `GET /proofs/{id}` | the job's status: `pending`, `proving`, `done`, `failed` |
//! | `GET /proofs/{id}/proof` | `{"proof": proof.json, "public": public.json}` once done |

use std::sync::Arc;

use fpn_prover::snarkjs;
use fpn_runtime::admin::{Method, Request, Response};
use serde_json::{Value, json};

use super::ProverShared;
use super::pool::SkipReason;
use super::witness::{journal_witness, submitted_witness};
use fpn_runtime::clock::now_ns;

use crate::run::Shared;

fn error(status: u16, message: impl Into<String>) -> Response {
    Response::json(status, json!({ "error": message.into() }).to_string())
}

/// The `/proofs` routes; `None` for any other path (the caller routes those).
pub struct ProofsApi {
    pub prover: Arc<ProverShared>,
    pub shared: Arc<Shared>,
}

impl ProofsApi {
    pub fn handle(&self, request: &Request) -> Option<Response> {
        let rest = request.path.strip_prefix("/proofs")?;
        let response = match (request.method, rest) {
            (Method::Post, "" | "/") => self.submit(&request.body),
            (Method::Get, "/vk") => self.vk(),
            (Method::Get, rest) => match rest.strip_prefix('/').map(|r| r.split_once('/').unwrap_or((r, "")))
            {
                Some((id, tail)) => match (id.parse::<u64>(), tail) {
                    (Ok(id), "") => self.status(id),
                    (Ok(id), "proof") => self.proof(id),
                    _ => Response::not_found(),
                },
                None => Response::not_found(),
            },
            (Method::Post, _) => Response::text(405, "method not allowed\n").with_header("Allow", "GET"),
        };
        Some(response)
    }

    fn submit(&self, body: &[u8]) -> Response {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return error(400, "the body is not JSON");
        };
        let (witness, windows) = if let Some(w) = v.get("witness") {
            match submitted_witness(w) {
                Ok(w) => (w, None),
                Err(e) => return error(400, format!("witness: {e}")),
            }
        } else if let Some(id) = v.get("window_id").and_then(Value::as_u64) {
            let line = {
                let latest = self.shared.latest.lock().unwrap_or_else(|p| p.into_inner());
                latest.iter().rev().find(|(w, _)| *w == id).map(|(_, line)| line.clone())
            };
            let Some(line) = line else {
                return error(404, format!("window {id} is not among the journal's newest windows"));
            };
            let line: Value = serde_json::from_str(&line).expect("the journal writes JSON");
            match journal_witness(&line, self.prover.reserve) {
                Ok(w) => match w.check() {
                    Ok(_) => (w, Some((id, id))),
                    Err(e) => return error(400, format!("window {id}: {e}")),
                },
                Err(SkipReason::TooLarge) => {
                    return error(400, format!("window {id} exceeds the circuit's 64 entries or 16 winners"));
                }
                Err(reason) => return error(400, format!("window {id}: {}", reason.as_str())),
            }
        } else {
            return error(400, "expected {\"window_id\": N} or {\"witness\": {...}}");
        };
        match self.prover.table().submit(witness, windows, now_ns()) {
            Ok(id) => Response::json(202, json!({ "id": id, "status": "pending" }).to_string()),
            Err(_) => error(503, "too many unfinished proof jobs"),
        }
    }

    fn vk(&self) -> Response {
        match self.prover.keys.get() {
            None => error(503, "the proving keys are not loaded yet"),
            Some(Err(e)) => error(500, format!("the proving keys are unusable: {e}")),
            Some(Ok(keys)) => Response::json(200, snarkjs::vk_to_json(keys.vk()).to_string()),
        }
    }

    fn status(&self, id: u64) -> Response {
        match self.prover.table().get(id) {
            Some(job) => Response::json(200, job.status_json().to_string()),
            None => error(404, format!("no proof job {id} (unknown or evicted)")),
        }
    }

    fn proof(&self, id: u64) -> Response {
        let table = self.prover.table();
        match table.get(id) {
            None => error(404, format!("no proof job {id} (unknown or evicted)")),
            Some(job) => match &job.files {
                Some(files) => Response::json(
                    200,
                    json!({ "id": id, "proof": files.proof, "public": files.public }).to_string(),
                ),
                None => Response::json(409, job.status_json().to_string()),
            },
        }
    }
}
