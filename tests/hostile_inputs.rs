//! Malformed and hostile inputs (issue 13, item 9): each case the fuzzing found is a test here.
//! None needs the real data: images, checkpoints and caches are made in the test.

use std::path::{Path, PathBuf};

use polycnn::cpu;
use polycnn::data::cache::CachedDataset;
use polycnn::data::cifar::MemoryDataset;
use polycnn::data::{Dataset, Geometry, decode_bytes, decode_file};
use polycnn::exec::{ActivationPlan, SiteMode, SiteStats};
use polycnn::model::{self, Arch};
use polycnn::poly::{optimise_eps, paper_degrees};
use polycnn::weights::{StateDict, Tensor, save_safetensors};

mod common;
use common::{digits, polycnn};

/// A fresh scratch folder, unique per test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pil")
            .join(name),
    )
    .unwrap()
}

// ---------------------------------------------------------------- images

/// A valid PNG of `width` x `height` (a gradient), a few hundred bytes for a 65535-pixel line.
fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, 7]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

#[test]
fn extreme_aspect_ratios_resize_within_the_output_size() {
    // Resize(256) of a 65535x1 image is 16776960x256 (12.9 GB as one buffer); only the crop is
    // computed now, so this takes milliseconds and kilobytes.
    let dir = scratch("aspect");
    for (w, h) in [(65535, 1), (1, 65535), (20000, 1)] {
        let path = dir.join(format!("{w}x{h}.png"));
        std::fs::write(&path, png(w, h)).unwrap();
        let image = decode_file(&path).unwrap();
        let start = std::time::Instant::now();
        let crop = Geometry::IMAGENET.apply(&image, &path).unwrap();
        assert_eq!((crop.channels, crop.height, crop.width), (3, 224, 224), "{w}x{h}");
        assert!(start.elapsed().as_secs() < 10, "{w}x{h}: {:?}", start.elapsed());
        // a 1-pixel line upsampled: every crop row (or column) is the same source pixels
        let plane = &crop.data[..224 * 224];
        if h == 1 {
            assert!(plane.chunks(224).all(|row| row == &plane[..224]), "{w}x{h}");
        } else {
            assert!(plane.chunks(224).all(|row| row.iter().all(|&v| v == row[0])), "{w}x{h}");
        }
    }
}

/// `jpeg` with the frame header's marker byte replaced (`marker`) and its size set to
/// `width` x `height`.
fn patch_frame(mut jpeg: Vec<u8>, marker: Option<u8>, width: u16, height: u16) -> Vec<u8> {
    let sof = (2..jpeg.len() - 1)
        .find(|&i| jpeg[i] == 0xFF && matches!(jpeg[i + 1], 0xC0..=0xC2))
        .expect("a frame header");
    if let Some(m) = marker {
        jpeg[sof + 1] = m;
    }
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

#[test]
fn progressive_jpegs_obey_the_decompression_bomb_limit() {
    let progressive = fixture("progressive.jpg");
    for (w, h) in [(65500, 65500), (20000, 20000)] {
        let bomb = patch_frame(progressive.clone(), None, w, h);
        let err = decode_bytes(&bomb).unwrap_err();
        assert!(
            err.contains("decompression-bomb") && err.contains(&format!("{w}x{h}")),
            "{err}"
        );
    }
    // baseline files were capped already and still are
    let err = decode_bytes(&patch_frame(fixture("restart.jpg"), None, 65500, 65500)).unwrap_err();
    assert!(err.contains("decompression-bomb"), "{err}");
}

#[test]
fn unsupported_jpeg_frame_types_are_named() {
    for (marker, kind) in [(0xC3, "lossless"), (0xC9, "arithmetic"), (0xC5, "hierarchical")] {
        let jpeg = patch_frame(fixture("restart.jpg"), Some(marker), 64, 64);
        let err = decode_bytes(&jpeg).unwrap_err();
        assert!(
            err.contains(&format!("SOF{}", marker - 0xC0)) && err.contains(kind) && !err.contains("components"),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------- safetensors

/// A safetensors file from a raw JSON header and data bytes.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    bytes
}

fn load_error(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let err = StateDict::load(&path).unwrap_err().to_string();
    assert!(err.contains(name), "the error names the file: {err}");
    err
}

#[test]
fn safetensors_offsets_must_tile_the_data_exactly() {
    let dir = scratch("safetensors");
    let data = [0u8; 32];
    let entry = |name: &str, begin: usize, end: usize| {
        format!(
            r#""{name}":{{"dtype":"F32","shape":[{}],"data_offsets":[{begin},{end}]}}"#,
            (end - begin) / 4
        )
    };
    let good = format!("{{{},{}}}", entry("a", 0, 16), entry("b", 16, 32));
    let path = dir.join("good.safetensors");
    std::fs::write(&path, safetensors(&good, &data)).unwrap();
    assert_eq!(StateDict::load(&path).unwrap().len(), 2);
    let cases = [
        (
            "overlap",
            format!("{{{},{}}}", entry("a", 0, 20), entry("b", 16, 32)),
            "overlap `a`",
        ),
        (
            "alias",
            format!("{{{},{}}}", entry("a", 0, 16), entry("b", 0, 16)),
            "overlap `a`",
        ),
        (
            "gap",
            format!("{{{},{}}}", entry("a", 0, 8), entry("b", 16, 32)),
            "bytes 8..16",
        ),
        (
            "start",
            format!("{{{},{}}}", entry("a", 4, 16), entry("b", 16, 32)),
            "bytes 0..4",
        ),
        (
            "coverage",
            format!("{{{},{}}}", entry("a", 0, 8), entry("b", 8, 16)),
            "trailing bytes",
        ),
        (
            "outside",
            format!("{{{},{}}}", entry("a", 0, 16), entry("b", 16, 40)),
            "outside the 32 data bytes",
        ),
        (
            "duplicate",
            format!("{{{},{}}}", entry("a", 0, 16), entry("a", 16, 32)),
            "`a` appears twice",
        ),
    ];
    for (name, header, needle) in cases {
        let err = load_error(&dir, &format!("{name}.safetensors"), &safetensors(&header, &data));
        assert!(err.contains(needle), "{name}: {err}");
    }
    // a header length beyond the file: said so, not "unrecognised format"
    let mut long = safetensors(&good, &data);
    long[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let err = load_error(&dir, "long.safetensors", &long);
    assert!(err.contains("header length") && err.contains("exceeds"), "{err}");
}

// ---------------------------------------------------------------- checkpoint values

/// The shipped digits CNN with `edit` applied to its tensor `name`, saved under `dir`.
fn edited_digits(dir: &Path, file: &str, name: &str, edit: impl Fn(&mut Tensor)) -> PathBuf {
    let dict = StateDict::load(Path::new(&digits("digits_cnn.safetensors"))).unwrap();
    let mut tensors: Vec<(String, Tensor)> = dict
        .names()
        .map(|n| (n.to_string(), dict.get(n).unwrap().clone()))
        .collect();
    edit(&mut tensors.iter_mut().find(|(n, _)| n == name).expect("tensor present").1);
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let path = dir.join(file);
    save_safetensors(&path, &refs).unwrap();
    path
}

#[test]
fn nan_and_negative_variance_name_the_file_then_the_tensor() {
    let dir = scratch("values");
    let nan = edited_digits(&dir, "nan.safetensors", "features.0.weight", |t| t.data[3] = f32::NAN);
    let err = model::load(Arch::DigitsCnn, &nan).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("{}: tensor `features.0.weight` holds NaN or infinity", nan.display())
    );
    let negative = edited_digits(&dir, "var.safetensors", "features.1.running_var", |t| t.data[0] = -0.5);
    let err = model::load(Arch::DigitsCnn, &negative).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: tensor `features.1.running_var` holds a negative variance -0.5",
            negative.display()
        )
    );
}

// ---------------------------------------------------------------- the preprocessed cache

/// Four 32x32 images with labels 0..3 and distinct pixels.
fn four_images() -> MemoryDataset {
    let pixels: Vec<u8> = (0..4 * 3072).map(|i| (i * 7 % 253) as u8).collect();
    MemoryDataset::new("four".into(), pixels, vec![0, 1, 2, 3]).unwrap()
}

#[test]
fn the_cache_never_replaces_what_is_not_a_cache() {
    let dir = scratch("cache-refuse");
    let data = four_images();
    // a checkpoint given as --cache by mistake: refused, untouched
    let checkpoint = dir.join("weights.safetensors");
    std::fs::copy(digits("digits_cnn.safetensors"), &checkpoint).unwrap();
    let before = std::fs::read(&checkpoint).unwrap();
    let err = CachedDataset::open_or_build(&data, &checkpoint).unwrap_err();
    assert!(err.to_string().contains("not a polycnn cache"), "{err}");
    assert_eq!(std::fs::read(&checkpoint).unwrap(), before);
    // a folder, a symbolic link and a FIFO (opening one for reading would block forever)
    let folder = dir.join("folder");
    std::fs::create_dir(&folder).unwrap();
    assert!(
        CachedDataset::open_or_build(&data, &folder)
            .unwrap_err()
            .to_string()
            .contains("not a regular file")
    );
    #[cfg(unix)]
    {
        let link = dir.join("link.cache");
        std::os::unix::fs::symlink(&checkpoint, &link).unwrap();
        let err = CachedDataset::open_or_build(&data, &link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let fifo = dir.join("fifo.cache");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let err = CachedDataset::open_or_build(&data, &fifo).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
            assert!(
                CachedDataset::open(&fifo)
                    .unwrap_err()
                    .to_string()
                    .contains("not a regular file")
            );
        }
    }
    // a cache (even a stale or damaged one) is replaced
    let cache = dir.join("a.cache");
    CachedDataset::open_or_build(&data, &cache).unwrap();
    std::fs::write(&cache, &std::fs::read(&cache).unwrap()[..60]).unwrap();
    let (rebuilt, _) = CachedDataset::open_or_build(&data, &cache).unwrap();
    assert_eq!(rebuilt.len(), 4);
}

#[test]
fn cache_temporary_files_are_unique_and_never_left_behind() {
    let dir = scratch("cache-temp");
    let data = four_images();
    // a user's a.tmp next to a.cache and a.bin, and a cache path that itself ends in .tmp
    std::fs::write(dir.join("a.tmp"), b"the user's notes").unwrap();
    for name in ["a.cache", "a.bin", "b.tmp"] {
        CachedDataset::open_or_build(&data, &dir.join(name)).unwrap();
    }
    assert_eq!(std::fs::read(dir.join("a.tmp")).unwrap(), b"the user's notes");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a.bin", "a.cache", "a.tmp", "b.tmp"]);
    for name in ["a.cache", "a.bin", "b.tmp"] {
        let cache = CachedDataset::open(&dir.join(name)).unwrap();
        assert_eq!(cache.load_u8(3).unwrap(), data.load_u8(3).unwrap());
    }
}

#[test]
fn damaged_cache_bytes_are_detected() {
    let dir = scratch("cache-damage");
    let data = four_images();
    let path = dir.join("d.cache");
    CachedDataset::open_or_build(&data, &path).unwrap();
    let good = std::fs::read(&path).unwrap();
    // layout: 48-byte header, labels (4 x 4), status (4), image sums (4 x 8), pixels (4 x 3072)
    let (labels_at, status_at, pixels_at) = (48, 48 + 16, 48 + 16 + 4 + 32);
    for (what, at) in [("label", labels_at + 4), ("status", status_at + 2)] {
        let mut bad = good.clone();
        bad[at] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let err = CachedDataset::open(&path).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{what}: {err}");
    }
    let mut bad = good.clone();
    bad[pixels_at + 2 * 3072 + 100] ^= 0x10; // image 2
    std::fs::write(&path, &bad).unwrap();
    let cache = CachedDataset::open(&path).unwrap();
    assert_eq!(cache.load_u8(1).unwrap(), data.load_u8(1).unwrap());
    let err = cache.load_u8(2).unwrap_err().to_string();
    assert!(err.contains("image 2") && err.contains("damaged"), "{err}");
}

// ---------------------------------------------------------------- the command line

/// The digits evaluation, fast: two α, fixed bounds, the CPU backend.
fn digits_eval(extra: &[&str]) -> (Option<i32>, String, String) {
    let (weights, data) = (digits("digits_cnn.safetensors"), digits("digits_test.bin"));
    let mut args = vec![
        "eval",
        "--model",
        "digits_cnn",
        "--weights",
        &weights,
        "--data",
        &data,
        "--alpha",
        "8",
        "--bound",
        "10",
        "--bound-max",
        "10",
        "--backend",
        "cpu",
    ];
    args.extend_from_slice(extra);
    polycnn(&args)
}

#[test]
fn a_json_report_into_a_missing_folder_fails_before_the_run() {
    let missing = scratch("json").join("no/such/folder/report.json");
    let (code, stdout, stderr) = digits_eval(&["--json", missing.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--json") && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "nothing was evaluated: {stdout}");
}

#[test]
fn an_empty_shard_is_an_error_like_an_empty_limit() {
    for extra in [&["--limit", "4", "--shard", "0/8"][..], &["--limit", "0"]] {
        let (code, _, stderr) = digits_eval(extra);
        assert_eq!(code, Some(1), "{extra:?}: {stderr}");
        assert!(
            stderr.contains("--shard 0/8") || stderr.contains("no images"),
            "{extra:?}: {stderr}"
        );
    }
    // the 4 images over 4 shards: each holds one
    let (code, stdout, stderr) = digits_eval(&["--limit", "4", "--shard", "3/4"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("1 images"), "{stdout}");
}

#[test]
fn a_missing_input_is_reported_before_any_backend_starts() {
    let (code, _, stderr) = polycnn(&[
        "eval",
        "--model",
        "digits_cnn",
        "--weights",
        "no/such/weights.pth",
        "--data",
        &digits("digits_test.bin"),
        "--backend",
        "auto",
    ]);
    assert_eq!(code, Some(1));
    // the first line is the real error, not a GPU driver's start-up message
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.contains("--weights no/such/weights.pth"), "{stderr}");
}

// ---------------------------------------------------------------- determinism

/// Logits and per-site statistics (max |x| as bits, counts, histograms) of `batch` run in
/// pieces of `per_run` images on a rayon pool of `threads`.
fn run_in_pieces(
    graph: &model::Graph,
    batch: &model::Batch,
    plan: &ActivationPlan,
    threads: usize,
    per_run: usize,
) -> (Vec<u32>, Vec<String>) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut logits = Vec::new();
        let mut sites: Option<Vec<SiteStats>> = None;
        for start in (0..batch.n).step_by(per_run) {
            let out = cpu::run(graph, &batch.slice(start, per_run), plan).unwrap();
            logits.extend(out.logits.iter().map(|v| v.to_bits()));
            match &mut sites {
                None => sites = Some(out.sites),
                Some(all) => all.iter_mut().zip(&out.sites).for_each(|(a, b)| a.merge(b)),
            }
        }
        let sites = sites
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{} {} {:08x} {} {} {:?}",
                    s.name,
                    s.count,
                    s.max_abs.to_bits(),
                    s.out_of_range,
                    s.non_finite,
                    s.log2_hist
                )
            })
            .collect();
        (logits, sites)
    })
}

#[test]
fn cpu_results_are_identical_for_any_thread_count_and_batch_size() {
    let graph = model::random(Arch::CifarResNet(20), 5).unwrap();
    let n = 24;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let pixels = (0..n * graph.input.numel())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    let batch = model::Batch::new(n, graph.input, pixels).unwrap();
    let sign = optimise_eps(paper_degrees(10).unwrap()).unwrap().composite;
    // B = 2 is below some inputs: out-of-range counts are compared too
    for plan in [
        ActivationPlan::exact(&graph),
        ActivationPlan::uniform(&graph, SiteMode::approx(&sign, 10, 2.0)),
    ] {
        let reference = run_in_pieces(&graph, &batch, &plan, 1, n);
        for (threads, per_run) in [(4, n), (4, 5), (1, 1), (4, 1), (2, 7)] {
            let other = run_in_pieces(&graph, &batch, &plan, threads, per_run);
            assert!(
                reference.0 == other.0,
                "logits differ with {threads} threads, {per_run} images per run"
            );
            assert_eq!(reference.1, other.1, "{threads} threads, {per_run} images per run");
        }
    }
}
