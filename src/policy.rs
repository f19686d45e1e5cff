//! NetworkPolicy verdicts (interim: the engine lands from its own branch; until then every
//! side is `n/a`, which is what the record contract says before policy evaluation exists).

use std::net::IpAddr;

use serde::Serialize;

use crate::cluster::ClusterView;
use crate::flow::key::Protocol;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    Unrestricted,
    Partial,
    #[serde(rename = "n/a")]
    NotApplicable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideVerdict {
    pub decision: Decision,
    pub policies: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub egress: SideVerdict,
    pub ingress: SideVerdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Egress,
    Ingress,
}

impl Verdict {
    #[must_use]
    pub fn not_evaluated(reason: &str) -> Self {
        let side = SideVerdict {
            decision: Decision::NotApplicable,
            policies: vec![],
            reason: reason.into(),
        };
        Self { egress: side.clone(), ingress: side }
    }

    #[must_use]
    pub fn violation(&self) -> Option<Direction> {
        if self.egress.decision == Decision::Deny {
            Some(Direction::Egress)
        } else if self.ingress.decision == Decision::Deny {
            Some(Direction::Ingress)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Connection {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    pub dst_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub policy: String,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.policy, self.message)
    }
}

#[derive(Debug, Default)]
pub struct PolicySet {
    generation: u64,
}

impl PolicySet {
    #[must_use]
    pub fn compile(view: &ClusterView) -> (Self, Vec<Diagnostic>) {
        (Self { generation: view.generation() }, Vec::new())
    }

    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    #[must_use]
    pub fn evaluate(&self, _view: &ClusterView, _connection: &Connection) -> Verdict {
        Verdict::not_evaluated("policy evaluation is not available in this build")
    }
}
