//! The release's source bundle, as ION-Roller built it: a zip holding a `Dockerfile` (`FROM`
//! the image at the release's tag, `EXPOSE` the ports, `CMD` the run args) and a
//! `Dockerrun.aws.json` (v1: image, ports, logging). Pure; the bytes are deterministic, so
//! re-uploading a bundle after a restart writes the same object.

use ionroller_shared::config::ServiceConfig;
use serde_json::json;

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

/// The bundle zipped (stored, not deflated: it is a few hundred bytes).
pub fn bundle_zip(config: &ServiceConfig, version: &str) -> Vec<u8> {
    zip_stored(&bundle_files(config, version))
}

/// A minimal zip archive writer: stored entries, a fixed 1980-01-01 timestamp so equal input
/// gives equal bytes. Enough for Elastic Beanstalk, which unzips the bundle.
pub fn zip_stored(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    const DOS_DATE: u16 = (1 << 5) | 1; // 1980-01-01
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in files {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let size = data.len() as u32;
        // Local file header.
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        out.extend_from_slice(&0u16.to_le_bytes()); // time
        out.extend_from_slice(&DOS_DATE.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // Central directory entry.
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        central.extend_from_slice(&20u16.to_le_bytes()); // needed
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&DOS_DATE.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attrs
        central.extend_from_slice(&0o100644u32.wrapping_shl(16).to_le_bytes()); // external attrs
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = out.len() as u32;
    let central_size = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // disk numbers
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&central_size.to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    out
}

/// CRC-32 (IEEE), bit by bit: bundles are tiny, a table is not worth it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn zip_has_each_file_stored_and_a_directory_that_points_at_it() {
        let zip = zip_stored(&[("a.txt", b"hello".to_vec()), ("b", b"xy".to_vec())]);
        assert_eq!(&zip[..4], &[0x50, 0x4b, 0x03, 0x04]);
        let end = zip.len() - 22;
        assert_eq!(&zip[end..end + 4], &[0x50, 0x4b, 0x05, 0x06]);
        let entries = u16::from_le_bytes([zip[end + 10], zip[end + 11]]);
        assert_eq!(entries, 2);
        let dir_offset =
            u32::from_le_bytes([zip[end + 16], zip[end + 17], zip[end + 18], zip[end + 19]])
                as usize;
        assert_eq!(&zip[dir_offset..dir_offset + 4], &[0x50, 0x4b, 0x01, 0x02]);
        // The first entry's data follows its 30-byte header and name.
        assert_eq!(&zip[35..40], b"hello");
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
        assert_eq!(bundle_zip(&config, "v2"), bundle_zip(&config, "v2"));
        assert_ne!(bundle_zip(&config, "v2"), bundle_zip(&config, "v3"));
    }
}
