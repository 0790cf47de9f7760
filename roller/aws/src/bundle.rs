//! The release's source bundle, as ION-Roller built it: a zip holding a `Dockerfile` (`FROM`
//! the image at the release's tag, `EXPOSE` the ports, `CMD` the run args) and a
//! `Dockerrun.aws.json` (v1: image, ports, logging). Pure; the bytes are deterministic, so
//! re-uploading a bundle after a restart writes the same object.

use std::io::{Cursor, Write};

use ionroller_shared::config::ServiceConfig;
use serde_json::json;
use zip::result::ZipResult;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZipWriter};

/// The bundle's files, in the order they are zipped.
pub fn bundle_files(config: &ServiceConfig, version: &str) -> Vec<(&'static str, Vec<u8>)> {
    let image = format!("{}:{}", config.image, version);
    let ports: Vec<_> = config
        .port_mappings
        .iter()
        .map(
            |p| json!({ "ContainerPort": p.container.to_string(), "HostPort": p.host.to_string() }),
        )
        .collect();
    let dockerrun = json!({
        "AWSEBDockerrunVersion": "1",
        "Image": { "Name": image, "Update": "true" },
        "Ports": ports,
        "Volumes": [],
        "Logging": "/var/log/app",
    });
    let mut dockerfile = format!("FROM {image}\n");
    for p in &config.port_mappings {
        dockerfile.push_str(&format!("EXPOSE {}\n", p.container));
    }
    if !config.run_args.is_empty() {
        // JSON array form: each argument stays one argument, whatever it contains.
        let args = serde_json::to_string(&config.run_args).unwrap_or_else(|_| "[]".into());
        dockerfile.push_str(&format!("CMD {args}\n"));
    }
    let dockerrun = serde_json::to_vec_pretty(&dockerrun).unwrap_or_default();
    vec![
        ("Dockerfile", dockerfile.into_bytes()),
        ("Dockerrun.aws.json", dockerrun),
    ]
}

/// The bundle zipped (stored, not deflated: it is a few hundred bytes, and no compression
/// feature of the `zip` crate needs building).
pub fn bundle_zip(config: &ServiceConfig, version: &str) -> ZipResult<Vec<u8>> {
    zip_stored(&bundle_files(config, version))
}

/// A zip of `files`, stored, in the order given, each with a fixed 1980-01-01 00:00 timestamp
/// (the earliest a zip can say), mode 0644 and "made by" Unix whatever the host: equal input
/// gives equal bytes, so a bundle re-uploaded after a restart is the same object.
pub fn zip_stored(files: &[(&str, Vec<u8>)]) -> ZipResult<Vec<u8>> {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644)
        .system(System::Unix);
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in files {
        zip.start_file(*name, options)?;
        zip.write_all(data)?;
    }
    Ok(zip.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Read;

    use zip::ZipArchive;

    /// An entry as a reader of the zip sees it.
    struct Entry {
        name: String,
        method: CompressionMethod,
        time: DateTime,
        mode: Option<u32>,
        data: Vec<u8>,
    }

    fn read_back(zip: &[u8]) -> Vec<Entry> {
        let mut archive = ZipArchive::new(Cursor::new(zip)).expect("a readable zip");
        (0..archive.len())
            .map(|i| {
                let mut file = archive.by_index(i).expect("entry");
                let mut data = Vec::new();
                file.read_to_end(&mut data).expect("entry data");
                Entry {
                    name: file.name().expect("a UTF-8 name").to_string(),
                    method: file.compression(),
                    time: file.last_modified().expect("a timestamp"),
                    mode: file.unix_mode(),
                    data,
                }
            })
            .collect()
    }

    #[test]
    fn zip_reads_back_in_order_stored_with_fixed_time_and_mode() {
        let zip = zip_stored(&[("a.txt", b"hello".to_vec()), ("b", b"xy".to_vec())]).expect("zip");
        let entries = read_back(&zip);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a.txt", "b"]);
        for e in &entries {
            assert_eq!(e.method, CompressionMethod::Stored, "{}", e.name);
            let t = &e.time;
            assert_eq!(
                (
                    t.year(),
                    t.month(),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                ),
                (1980, 1, 1, 0, 0, 0),
                "{}",
                e.name
            );
            assert_eq!(e.mode.map(|m| m & 0o777), Some(0o644), "{}", e.name);
        }
        assert_eq!(entries[0].data, b"hello");
        assert_eq!(entries[1].data, b"xy");
        // Stored: the data sits in the archive as is.
        assert!(zip.windows(5).any(|w| w == b"hello"));
    }

    #[test]
    fn the_bundle_reads_back_as_its_files() {
        let config: ServiceConfig =
            serde_json::from_str(include_str!("../../../examples/hello.json"))
                .expect("example config parses");
        let zip = bundle_zip(&config, "v2").expect("zip");
        let entries: Vec<(String, Vec<u8>)> = read_back(&zip)
            .into_iter()
            .map(|e| (e.name, e.data))
            .collect();
        let files: Vec<(String, Vec<u8>)> = bundle_files(&config, "v2")
            .into_iter()
            .map(|(name, data)| (name.to_string(), data))
            .collect();
        assert_eq!(entries, files);
    }

    #[test]
    fn bundle_names_the_image_at_the_release_tag_and_is_deterministic() {
        let config: ServiceConfig =
            serde_json::from_str(include_str!("../../../examples/hello.json"))
                .expect("example config parses");
        let files = bundle_files(&config, "v2");
        let dockerfile = String::from_utf8_lossy(&files[0].1).to_string();
        assert!(
            dockerfile.starts_with("FROM example/hello:v2\n"),
            "{dockerfile}"
        );
        assert!(dockerfile.contains("EXPOSE 8080"));
        assert!(dockerfile.contains(r#"CMD ["--log-format=json"]"#));
        let run: serde_json::Value = serde_json::from_slice(&files[1].1).expect("json");
        assert_eq!(run["Image"]["Name"], "example/hello:v2");
        assert_eq!(run["Ports"][0]["ContainerPort"], "8080");
        let zip = |version| bundle_zip(&config, version).expect("zip");
        assert_eq!(zip("v2"), zip("v2"));
        assert_ne!(zip("v2"), zip("v3"));
    }
}
