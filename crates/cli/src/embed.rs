//! `tandem embed`: vectors for texts from an embedding model, printed as one JSON object.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tandem_embed::Embedder;
use tandem_fetch::{Fetcher, Format};

use crate::config::{Config, ModelConfig};
use crate::runtime::Runtime;

/// Embeds `texts` with `model`: a configured embedding model, else a catalog one by name.
pub async fn run(
    config: Config,
    fetcher: &Fetcher,
    model: String,
    texts: Vec<String>,
) -> Result<()> {
    let embedder = match config.models.get(&model) {
        Some(ModelConfig::Embedding(_)) => {
            Runtime::load(config, fetcher, std::slice::from_ref(&model))
                .await?
                .embedder(&model)?
        }
        Some(_) => bail!("`{model}` is a chat model, not an embedding model"),
        None if config.pipelines.contains_key(&model) => {
            bail!("`{model}` is a chat pipeline, not an embedding model")
        }
        None => Arc::new(load_from_catalog(fetcher, &model).await?),
    };
    let dimensions = embedder.dimensions();
    let out = tokio::task::spawn_blocking(move || embedder.embed(&texts)).await??;
    let json = serde_json::json!({
        "model": model,
        "dimensions": dimensions,
        "tokens": out.tokens,
        "embeddings": out.vectors,
    });
    println!("{json}");
    Ok(())
}

/// A catalog embedding model, pulled if needed and loaded; a clear error for any other name.
pub(crate) async fn load_from_catalog(fetcher: &Fetcher, name: &str) -> Result<Embedder> {
    match tandem_fetch::find(name).map(|model| model.format) {
        Some(Format::ZipDirectory { .. }) => {}
        Some(Format::Gguf { .. }) => bail!("`{name}` is a chat model, not an embedding model"),
        None => bail!(
            "no embedding model is called `{name}`: configure one with kind = \"embedding\", \
             or name a catalog model (known: {})",
            tandem_fetch::known_names()
        ),
    }
    let dir = fetcher
        .pull(name)
        .await
        .with_context(|| format!("cannot fetch model `{name}`"))?;
    tokio::task::spawn_blocking(move || Embedder::load(&dir))
        .await?
        .with_context(|| format!("cannot load embedding model `{name}`"))
}
