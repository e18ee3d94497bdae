//! What each API key spends, and the budgets that stop it.
//!
//! [`Spending`] adds every answered request's cost (and what routers and cascades saved) to its
//! key's totals per pipeline in the [`Store`], and refuses a request with 429 and OpenAI's
//! `insufficient_quota` error once the key's budget is spent. Totals live in the store, so they
//! survive a restart and are shared by replicas on one store.
//!
//! A request is checked before it starts and charged when it ends, so requests already running when
//! a budget runs out still finish: the overshoot is at most what those requests cost.

use std::collections::BTreeMap;
use std::sync::Arc;

use tandem_core::Report;
use tandem_store::{Spend, Store, StoreError};

use crate::error::ApiError;
use crate::metrics;

/// The tenant of requests on a server without API keys.
pub const ANONYMOUS: &str = "anonymous";

/// Per-key spending, kept in a store, with optional budgets in US dollars.
pub struct Spending {
    store: Arc<dyn Store>,
    default_budget_usd: Option<f64>,
    keys: BTreeMap<String, NamedKey>,
}

struct NamedKey {
    name: String,
    budget_usd: Option<f64>,
}

impl std::fmt::Debug for Spending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spending")
            .field("default_budget_usd", &self.default_budget_usd)
            .field(
                "keys",
                &self
                    .keys
                    .values()
                    .map(|k| (&k.name, k.budget_usd))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Spending {
    /// Records spending in `store`; every key without a budget of its own gets
    /// `default_budget_usd` (`None`: no limit).
    pub fn new(store: Arc<dyn Store>, default_budget_usd: Option<f64>) -> Self {
        Spending {
            store,
            default_budget_usd,
            keys: BTreeMap::new(),
        }
    }

    /// Names the key whose tenant id is `tenant` ([`crate::tenant_id`]) in metrics and logs, and
    /// gives it its own budget (`None`: the default).
    pub fn with_key(
        mut self,
        tenant: impl Into<String>,
        name: impl Into<String>,
        budget_usd: Option<f64>,
    ) -> Self {
        self.keys.insert(
            tenant.into(),
            NamedKey {
                name: name.into(),
                budget_usd,
            },
        );
        self
    }

    fn budget_usd(&self, tenant: &str) -> Option<f64> {
        self.keys
            .get(tenant)
            .and_then(|k| k.budget_usd)
            .or(self.default_budget_usd)
    }

    /// The key as /metrics labels it: its configured name, else the start of its tenant id.
    fn label(&self, tenant: &str) -> String {
        match self.keys.get(tenant) {
            Some(key) => key.name.clone(),
            None if tenant == ANONYMOUS => ANONYMOUS.to_string(),
            None => format!("key-{}", &tenant[..tenant.len().min(12)]),
        }
    }

    /// Sets the spending gauges from the store, so /metrics shows the totals kept before a restart.
    pub(crate) fn publish(&self) -> Result<(), StoreError> {
        for totals in self.store.spending()? {
            metrics::record_spending(&self.label(&totals.tenant), &totals);
        }
        Ok(())
    }

    /// Refuses `tenant` once its budget is spent.
    pub(crate) async fn check(&self, tenant: &str) -> Result<(), ApiError> {
        let Some(budget) = self.budget_usd(tenant) else {
            return Ok(());
        };
        let store = Arc::clone(&self.store);
        let owned = tenant.to_string();
        let spent = tokio::task::spawn_blocking(move || store.spent_usd(&owned))
            .await
            .map_err(|e| ApiError::internal(format!("the spending check stopped: {e}")))?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot read a key's spending");
                ApiError::internal("cannot read this key's spending; try again later".into())
            })?;
        if spent >= budget {
            return Err(ApiError::insufficient_quota(spent, budget));
        }
        Ok(())
    }

    /// Adds what `report` cost to `tenant`'s totals on its pipeline.
    pub(crate) async fn charge(&self, tenant: &str, report: &Report) {
        let spend = Spend {
            prompt_tokens: u64::from(report.prompt_tokens),
            completion_tokens: u64::from(report.completion_tokens),
            cost_usd: report.cost_usd,
            saved_usd: report.saved_usd().unwrap_or(0.0),
        };
        let store = Arc::clone(&self.store);
        let (owned, pipeline) = (tenant.to_string(), report.pipeline.clone());
        let at_ms = crate::unix_now_ms();
        let added =
            tokio::task::spawn_blocking(move || store.add_spend(&owned, &pipeline, &spend, at_ms))
                .await;
        match added {
            Ok(Ok(totals)) => metrics::record_spending(&self.label(tenant), &totals),
            Ok(Err(e)) => tracing::error!(error = %e, "cannot record a response's cost"),
            Err(e) => tracing::error!(error = %e, "recording a response's cost stopped"),
        }
    }
}

/// Who pays for one request: admitted before it runs, charged when its report arrives.
pub(crate) struct Charge {
    spending: Arc<Spending>,
    tenant: String,
}

impl Charge {
    /// Adds what `report` (the server's finished report, with its pipeline) cost to the key.
    pub(crate) async fn charge(&self, report: &Report) {
        self.spending.charge(&self.tenant, report).await;
    }
}

/// Counts a finished, non-streamed answer's `report` in /metrics and charges it to whoever pays
/// (nobody on a server that keeps no spending). A stream's render counts its report and
/// [`crate::sse::forward`] charges it.
pub(crate) async fn settle(charge: Option<&Charge>, report: &Report) {
    crate::metrics::record_report(report);
    if let Some(charge) = charge {
        charge.charge(report).await;
    }
}

/// Refuses the request when its key's budget is spent; otherwise who pays for it when it ends
/// (`None` on a server that keeps no spending). Every generating endpoint goes through here.
pub(crate) async fn admit(
    spending: Option<&Arc<Spending>>,
    tenant: Option<&str>,
) -> Result<Option<Charge>, ApiError> {
    let Some(spending) = spending else {
        return Ok(None);
    };
    let tenant = tenant.unwrap_or(ANONYMOUS).to_string();
    spending.check(&tenant).await?;
    Ok(Some(Charge {
        spending: Arc::clone(spending),
        tenant,
    }))
}
