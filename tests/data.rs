//! src/data on the real data in ../shared/data and the PIL fixtures in tests/fixtures/pil
//! (written by scripts/pil_fixture.py).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use polycnn::data::cache::{CacheStatus, CachedDataset};
use polycnn::data::cifar;
use polycnn::data::imagenet::{self, ClassIndex, Layout};
use polycnn::data::loader::{Loader, LoaderConfig};
use polycnn::data::resample::{Interpolation, resize, resize_bilinear};
use polycnn::data::{Dataset, FileDataset, Geometry, ImageU8, Normalize, RgbImage, decode_file};

mod common;
use common::has_data;

/// The real data folder: a test reading it first checks its parts with `has_data` (and skips
/// without them).
fn shared() -> PathBuf {
    common::data_root()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pil")
}

fn imagenet_dir(sub: &str) -> PathBuf {
    shared().join("imagenet").join(sub)
}

fn class_index() -> ClassIndex {
    ClassIndex::load(&imagenet_dir("labels/imagenet_class_index.json")).unwrap()
}

/// A fresh scratch directory under the target dir, unique per test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// (fraction of identical samples, max abs difference).
fn compare(a: &[u8], b: &[u8]) -> (f64, u8) {
    assert_eq!(a.len(), b.len());
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    let max = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0);
    (same as f64 / a.len() as f64, max)
}

/// CHW → interleaved RGB, to compare with PIL's layout.
fn hwc(img: &ImageU8) -> Vec<u8> {
    let plane = img.height * img.width;
    (0..plane)
        .flat_map(|p| [img.data[p], img.data[plane + p], img.data[2 * plane + p]])
        .collect()
}

// ---------------------------------------------------------------- ImageNet layouts

#[test]
fn imagenet_flat_layout_with_every_labels_file() {
    if !has_data(&["imagenet/val1300_227px", "imagenet/labels"]) {
        return;
    }
    let data = imagenet_dir("val1300_227px/data");
    let classes = class_index();
    assert_eq!(classes.len(), 1000);
    assert_eq!((classes.synset(0), classes.name(0)), ("n01440764", "tench"));

    let txt = Layout::Flat {
        labels: imagenet_dir("val1300_227px/dataset.txt"),
    };
    let csv = Layout::Flat {
        labels: imagenet_dir("labels/LOC_val_solution.csv"),
    };
    let caffe = Layout::Flat {
        labels: imagenet_dir("labels/val_gt_caffe_order_1900zyh.txt"),
    };
    let by_txt = imagenet::open(&data, &txt, None, Geometry::IMAGENET).unwrap();
    let by_csv = imagenet::open(&data, &csv, Some(&classes), Geometry::IMAGENET).unwrap();
    let by_caffe = imagenet::open(&data, &caffe, None, Geometry::IMAGENET).unwrap();
    // Without a class index, the CSV's own sorted synsets give torchvision's order.
    let by_csv_alone = imagenet::open(&data, &csv, None, Geometry::IMAGENET).unwrap();
    assert_eq!(by_txt.len(), 1300);
    // dataset.txt: ./data/ILSVRC2012_val_00000347.JPEG, 472 (the first file in sorted order)
    assert!(by_txt.describe(0).ends_with("ILSVRC2012_val_00000347.JPEG"));
    assert_eq!(by_txt.label(0), 472);
    for i in 0..by_txt.len() {
        assert_eq!(by_txt.label(i), by_csv.label(i), "{}", by_txt.describe(i));
        assert_eq!(by_txt.label(i), by_caffe.label(i), "{}", by_txt.describe(i));
        assert_eq!(by_txt.label(i), by_csv_alone.label(i), "{}", by_txt.describe(i));
    }
    // The same image through the three label sources: CSV synset → index == caffe index.
    let csv_table = imagenet::read_labels(&imagenet_dir("labels/LOC_val_solution.csv"), Some(&classes)).unwrap();
    let caffe_table = imagenet::read_labels(&imagenet_dir("labels/val_caffe_VeriSilicon.txt"), None).unwrap();
    assert_eq!(csv_table.len(), 50_000);
    assert_eq!(csv_table["ILSVRC2012_val_00000001"], 65);
    assert_eq!(caffe_table["ILSVRC2012_val_00000001"], 65);
    assert_eq!(csv_table, caffe_table);

    let image = by_txt.load_u8(0).unwrap();
    assert_eq!((image.channels, image.height, image.width), (3, 224, 224));
    let x = by_txt.load(0, &Normalize::IMAGENET).unwrap();
    assert_eq!(x.len(), 3 * 224 * 224);
    assert_eq!(x[0], (f32::from(image.data[0]) / 255.0 - 0.485) / 0.229);
}

#[test]
fn imagenet_synset_prefixed_layout() {
    if !has_data(&["imagenet/train_sample250", "imagenet/labels"]) {
        return;
    }
    let dir = imagenet_dir("train_sample250");
    assert_eq!(Layout::detect(&dir, None).unwrap(), Layout::SynsetPrefixed);
    let ds = imagenet::open(&dir, &Layout::SynsetPrefixed, Some(&class_index()), Geometry::IMAGENET).unwrap();
    assert_eq!(ds.len(), 250);
    assert!(ds.describe(0).ends_with("n01440764_tench.JPEG"));
    assert_eq!(ds.label(0), 0);
    let hen = (0..ds.len())
        .find(|&i| ds.describe(i).ends_with("n01514859_hen.JPEG"))
        .unwrap();
    assert_eq!(ds.label(hen), 8);
    let err = imagenet::open(&dir, &Layout::SynsetPrefixed, None, Geometry::IMAGENET).unwrap_err();
    assert!(err.to_string().contains("class index"), "{err}");
}

#[test]
fn imagenet_class_folders_and_bad_layouts() {
    if !has_data(&["imagenet/train_sample250", "imagenet/labels", "imagenet/val1300_227px"]) {
        return;
    }
    let root = scratch("folders");
    let src = imagenet_dir("train_sample250");
    // Two class folders (not all 1,000): ImageFolder numbers them 0, 1; the class index gives the real ids.
    for (synset, file) in [
        ("n01514859", "n01514859_hen.JPEG"),
        ("n01440764", "n01440764_tench.JPEG"),
    ] {
        std::fs::create_dir_all(root.join(synset)).unwrap();
        std::fs::copy(src.join(file), root.join(synset).join("a.JPEG")).unwrap();
        std::fs::write(root.join(synset).join("notes.txt"), "not an image").unwrap();
    }
    assert_eq!(Layout::detect(&root, None).unwrap(), Layout::ClassFolders);
    let folder = imagenet::open(&root, &Layout::ClassFolders, None, Geometry::IMAGENET).unwrap();
    assert_eq!(folder.len(), 2);
    assert_eq!((folder.label(0), folder.label(1)), (0, 1));
    assert!(folder.describe(0).contains("n01440764"));
    let indexed = imagenet::open(&root, &Layout::ClassFolders, Some(&class_index()), Geometry::IMAGENET).unwrap();
    assert_eq!((indexed.label(0), indexed.label(1)), (0, 8));

    // Unknown layout, missing folder, labels file without the images' names: errors naming the path.
    let empty = scratch("empty");
    let err = Layout::detect(&empty, None).unwrap_err();
    assert!(err.to_string().contains("unknown ImageNet layout"), "{err}");
    let missing = empty.join("nope");
    let err = imagenet::open(&missing, &Layout::ClassFolders, None, Geometry::IMAGENET).unwrap_err();
    assert_eq!(err.path, missing);
    std::fs::copy(src.join("n01440764_tench.JPEG"), empty.join("x.JPEG")).unwrap();
    let labels = Layout::Flat {
        labels: imagenet_dir("val1300_227px/dataset.txt"),
    };
    let err = imagenet::open(&empty, &labels, None, Geometry::IMAGENET).unwrap_err();
    assert!(
        err.to_string().contains("x.JPEG") && err.to_string().contains("no label"),
        "{err}"
    );
}

// ---------------------------------------------------------------- CIFAR-10

fn strip() -> cifar::MemoryDataset {
    let dir = shared().join("cifar10/test_first1000_png");
    cifar::png_strip(&dir.join("cifar10_batch_50.png"), &dir.join("cifar10_labels.js")).unwrap()
}

#[test]
fn cifar_lossless_strip() {
    if !has_data(&["cifar10/test_first1000_png"]) {
        return;
    }
    let ds = strip();
    assert_eq!(ds.len(), 1000);
    let first: Vec<usize> = (0..10).map(|i| ds.label(i)).collect();
    assert_eq!(first, [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
    let cat = ds.load_u8(0).unwrap();
    assert_eq!(cat.rgb(0, 0), [158, 112, 49]);
    let auto = cifar::open(&shared().join("cifar10/test_first1000_png")).unwrap();
    assert_eq!(auto.len(), 1000);
    assert_eq!(auto.load_u8(0).unwrap(), cat);
}

#[test]
fn cifar_binary_batches_round_trip_the_strip() {
    if !has_data(&["cifar10/test_first1000_png"]) {
        return;
    }
    let ds = strip();
    let dir = scratch("cifar-bin");
    let mut bytes = Vec::new();
    for i in 0..5 {
        bytes.push(ds.label(i) as u8);
        bytes.extend(ds.load_u8(i).unwrap().data);
    }
    let path = dir.join("test_batch.bin");
    std::fs::write(&path, &bytes).unwrap();
    for bin in [
        cifar::binary_batches(std::slice::from_ref(&path)).unwrap(),
        cifar::binary_batches(&[path.clone(), path.clone()]).unwrap(),
    ] {
        assert_eq!(bin.len() % 5, 0);
        for i in 0..bin.len() {
            assert_eq!(bin.label(i), ds.label(i % 5));
            assert_eq!(bin.load_u8(i).unwrap(), ds.load_u8(i % 5).unwrap());
        }
    }
    assert_eq!(cifar::open(&dir).unwrap().len(), 5);
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let err = cifar::binary_batches(std::slice::from_ref(&path)).unwrap_err();
    assert!(err.to_string().contains("3073-byte"), "{err}");
    assert_eq!(err.path, path);
}

#[test]
fn cifar_python_batches() {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cifar_py_batch.json")).unwrap()).unwrap();
    let labels: Vec<usize> = meta["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let sum = meta["pixel_sum"].as_u64().unwrap();
    let first: Vec<u8> = meta["first_pixel_rgb"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect();
    // Python 3 pickles: protocol 2 (bytes via _codecs.encode, _reconstruct + BUILD) and 5 (_frombuffer).
    for name in ["cifar_py_batch_p2.pkl", "cifar_py_batch_p5.pkl"] {
        let ds = cifar::python_batch(&fixtures().join(name)).unwrap();
        check_batch(&ds, &labels, sum, &first);
        assert_eq!(cifar::open(&fixtures().join(name)).unwrap().len(), labels.len());
    }
    // The official cifar-10-batches-py files were written by Python 2 (str keys and data).
    let dir = scratch("cifar-py2");
    let data: Vec<u8> = (0..2 * 3072).map(|i| (i * 7 % 251) as u8).collect();
    let path = dir.join("test_batch");
    std::fs::write(&path, python2_batch(&data, &[5, 9])).unwrap();
    let ds = cifar::python_batch(&path).unwrap();
    check_batch(
        &ds,
        &[5, 9],
        data.iter().map(|&v| u64::from(v)).sum(),
        &[data[0], data[1024], data[2048]],
    );

    // Refused globals, truncation and wrong contents are errors naming the file.
    let evil = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
    std::fs::write(&path, evil).unwrap();
    let err = cifar::python_batch(&path).unwrap_err();
    assert!(err.to_string().contains("refusing pickle global os.system"), "{err}");
    let good = python2_batch(&data, &[5, 9]);
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let err = cifar::python_batch(&path).unwrap_err();
    assert!(err.to_string().contains("truncated") && err.path == path, "{err}");
    std::fs::write(&path, b"\x80\x02}q\x00.").unwrap();
    assert!(cifar::python_batch(&path).unwrap_err().to_string().contains("'data'"));
}

fn check_batch(ds: &cifar::MemoryDataset, labels: &[usize], sum: u64, first: &[u8]) {
    assert_eq!(ds.len(), labels.len());
    assert_eq!((0..ds.len()).map(|i| ds.label(i)).collect::<Vec<_>>(), labels);
    let total: u64 = (0..ds.len())
        .flat_map(|i| ds.load_u8(i).unwrap().data)
        .map(u64::from)
        .sum();
    assert_eq!(total, sum);
    assert_eq!(ds.load_u8(0).unwrap().rgb(0, 0).to_vec(), first);
}

/// What Python 2's cPickle (protocol 2) writes for a CIFAR batch: str keys (SHORT_BINSTRING),
/// `numpy.core.multiarray._reconstruct` + BUILD with the raw data as a BINSTRING.
fn python2_batch(data: &[u8], labels: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x02}q\x01(U\x04dataq\x02cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04K\x00\x85U\x01b\x87Rq\x05(K\x01".to_vec();
    p.push(b'K');
    p.push((data.len() / 3072) as u8);
    p.extend(b"M\x00\x0c\x86cnumpy\ndtype\nq\x06U\x02u1K\x00K\x01\x87Rq\x07(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T");
    p.extend((data.len() as u32).to_le_bytes());
    p.extend(data);
    p.extend(b"tbU\x06labelsq\x08]q\x09(");
    for &l in labels {
        p.extend([b'K', l]);
    }
    p.extend(b"eU\x0bbatch_labelq\x0aU\x04testq\x0bu.");
    p
}

#[test]
fn cifar_jpeg_class_folders() {
    if !has_data(&["cifar10/test_jpg", "imagenet/train_sample250"]) {
        return;
    }
    let root = shared().join("cifar10/test_jpg/test");
    let ds = cifar::class_folder_dataset(&root).unwrap();
    assert_eq!(ds.len(), 10_000);
    for class in 0..10 {
        assert_eq!((0..ds.len()).filter(|&i| ds.label(i) == class).count(), 1000);
    }
    assert!(ds.describe(0).contains("airplane") && ds.label(0) == 0);
    assert!(ds.describe(9999).contains("truck") && ds.label(9999) == 9);
    let image = ds.load_u8(0).unwrap();
    assert_eq!((image.height, image.width), (32, 32));
    assert_eq!(cifar::open(&shared().join("cifar10/test_jpg")).unwrap().len(), 10_000);
    // An ImageNet-sized JPEG is not a CIFAR image: a clear error, not a resize.
    let bad = FileDataset::new(
        vec![imagenet_dir("train_sample250/n01440764_tench.JPEG")],
        vec![0],
        Geometry::CIFAR,
    );
    assert!(bad.load_u8(0).unwrap_err().to_string().contains("expected 32x32"));
}

// ---------------------------------------------------------------- PIL parity

#[derive(Debug)]
struct Fixture {
    file: String,
    source: PathBuf,
    sampling: String,
    window: [usize; 4],
}

fn manifest() -> Vec<Fixture> {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    let entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    entries
        .iter()
        .map(|e| Fixture {
            file: e["file"].as_str().unwrap().into(),
            source: shared().join(e["source"].as_str().unwrap()),
            sampling: format!("{} {}", e["mode"].as_str().unwrap(), e["sampling"]),
            window: serde_json::from_value(e["window"].clone()).unwrap(),
        })
        .collect()
}

fn png(name: &str) -> RgbImage {
    decode_file(&fixtures().join(name)).unwrap()
}

/// Our resize is bit-exact with PIL's when both start from the same pixels (the PNG windows are exactly
/// PIL's decode): down- and up-sampling, and the whole Resize(256) + CenterCrop(224) geometry.
#[test]
fn pil_resize_is_bit_exact_on_pil_decoded_pixels() {
    for f in manifest() {
        let window = png(&format!("{}.window.png", f.file));
        for (w, h) in [(27, 38), (87, 100)] {
            let want = png(&format!("{}.window.resize_{w}x{h}.png", f.file));
            let got = resize_bilinear(&window.data, window.width, window.height, 3, w, h);
            assert_eq!(compare(&got, &want.data), (1.0, 0), "{} -> {w}x{h}", f.file);
        }
    }
    let full = png("n03825788_nipple.full.png");
    let crop = Geometry::IMAGENET.apply(&full, Path::new("nipple")).unwrap();
    assert_eq!(compare(&hwc(&crop), &png("n03825788_nipple.crop.png").data), (1.0, 0));
}

/// The same for PIL's bicubic filter (`--interpolation bicubic`); fixtures from
/// scripts/pil_bicubic_fixture.py: window resizes both ways, and Resize(256 | 232, BICUBIC) +
/// CenterCrop(224) of a whole image.
#[test]
fn pil_bicubic_resize_is_bit_exact_on_pil_decoded_pixels() {
    for f in manifest() {
        let window = png(&format!("{}.window.png", f.file));
        for (w, h) in [(27, 38), (87, 100)] {
            let want = png(&format!("{}.window.bicubic_{w}x{h}.png", f.file));
            let got = resize(
                &window.data,
                window.width,
                window.height,
                3,
                w,
                h,
                Interpolation::Bicubic,
            );
            assert_eq!(compare(&got, &want.data), (1.0, 0), "{} -> {w}x{h}", f.file);
        }
    }
    let full = png("n03825788_nipple.full.png");
    for resize in [256, 232] {
        let geometry = Geometry::ResizeCenterCrop {
            resize,
            crop: 224,
            interpolation: Interpolation::Bicubic,
        };
        let crop = geometry.apply(&full, Path::new("nipple")).unwrap();
        let want = png(&format!("n03825788_nipple.crop_bicubic_{resize}_224.png"));
        assert_eq!(compare(&hwc(&crop), &want.data), (1.0, 0), "resize {resize}");
    }
}

/// End to end from the JPEG files: decode (src/data/jpeg.rs reproduces libjpeg-turbo) + resize + crop
/// must equal PIL + torchvision exactly, for every chroma layout and for grayscale. The decode-only
/// comparison uses a 64x64 window of PIL's full decode.
#[test]
fn pil_parity_from_jpeg() {
    if !has_data(&["imagenet/train_sample250"]) {
        return;
    }
    for f in manifest() {
        let decoded = decode_file(&f.source).unwrap();
        let [x, y, w, h] = f.window;
        let window: Vec<u8> = (y..y + h)
            .flat_map(|r| decoded.data[(r * decoded.width + x) * 3..][..w * 3].to_vec())
            .collect();
        let decode = compare(&window, &png(&format!("{}.window.png", f.file)).data);
        let crop = Geometry::IMAGENET.apply(&decoded, &f.source).unwrap();
        let crop = compare(&hwc(&crop), &png(&format!("{}.crop.png", f.file)).data);
        println!(
            "{:28} {:20} decode: {:6.2}% identical, max {} | crop: {:6.2}% identical, max {}",
            f.file,
            f.sampling,
            100.0 * decode.0,
            decode.1,
            100.0 * crop.0,
            crop.1
        );
        assert_eq!((decode, crop), ((1.0, 0), (1.0, 0)), "{}", f.file);
    }
}

/// Restart markers go through the exact decoder too.
#[test]
fn restart_intervals_decode_exactly() {
    let ours = decode_file(&fixtures().join("restart.jpg")).unwrap();
    assert_eq!(compare(&ours.data, &png("restart.rgb.png").data), (1.0, 0));
}

/// Progressive JPEGs fall back to zune-jpeg, which is close to libjpeg but not exact (its IDCT and
/// chroma upsampling round differently). Measured: 98.06% identical, max 2 levels; bound with margin.
#[test]
fn progressive_jpeg_falls_back_close_to_pil() {
    let ours = decode_file(&fixtures().join("progressive.jpg")).unwrap();
    let (same, max) = compare(&ours.data, &png("progressive.rgb.png").data);
    println!("progressive: {:.2}% identical, max {max}", 100.0 * same);
    assert!(same >= 0.80 && max <= 4, "{same} {max}");
}

/// CMYK JPEG (Adobe, inverted; decoded by zune-jpeg) → RGB with PIL's formula. Not exact: the samples
/// themselves differ by zune's IDCT rounding. Measured: 98.66% identical, max 1 level.
#[test]
fn cmyk_jpeg_converts_like_pil() {
    let ours = decode_file(&fixtures().join("cmyk.jpg")).unwrap();
    let pil = png("cmyk.rgb.png");
    assert_eq!((ours.width, ours.height), (pil.width, pil.height));
    let (same, max) = compare(&ours.data, &pil.data);
    println!("CMYK: {:.2}% identical, max {max}", 100.0 * same);
    assert!(same >= 0.95 && max <= 2, "{same} {max}");
}

/// Full-set parity numbers over all 250 images; needs `scripts/pil_fixture.py --all DIR` first:
/// `POLYCNN_PIL_ALL=DIR cargo test --release --test data -- --ignored pil_parity_all --nocapture`.
#[test]
#[ignore]
fn pil_parity_all() {
    let dir = PathBuf::from(std::env::var("POLYCNN_PIL_ALL").expect("set POLYCNN_PIL_ALL"));
    let manifest: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let mut groups: std::collections::BTreeMap<String, Vec<[f64; 4]>> = Default::default();
    for e in &manifest {
        let src = shared().join(e["source"].as_str().unwrap());
        let stem = e["file"].as_str().unwrap();
        let img = decode_file(&src).unwrap();
        let full = std::fs::read(dir.join(format!("{stem}.full.rgb"))).unwrap();
        let want = std::fs::read(dir.join(format!("{stem}.crop.rgb"))).unwrap();
        let d = compare(&img.data, &full);
        let c = compare(&hwc(&Geometry::IMAGENET.apply(&img, &src).unwrap()), &want);
        // The resize alone, from PIL's own decode, must be exact on every image.
        let pil_decoded = RgbImage {
            width: img.width,
            height: img.height,
            data: full,
        };
        assert_eq!(
            compare(&hwc(&Geometry::IMAGENET.apply(&pil_decoded, &src).unwrap()), &want),
            (1.0, 0),
            "{stem}"
        );
        let key = format!("{} {}", e["mode"], e["sampling"]);
        groups
            .entry(key)
            .or_default()
            .push([d.0, f64::from(d.1), c.0, f64::from(c.1)]);
    }
    for (key, rows) in groups {
        let min = |k: usize| rows.iter().map(|r| r[k]).fold(1.0, f64::min);
        let max = |k: usize| rows.iter().map(|r| r[k]).fold(0.0, f64::max);
        let mean = |k: usize| rows.iter().map(|r| r[k]).sum::<f64>() / rows.len() as f64;
        println!(
            "{key:32} n={:3} decode identical min {:.4} mean {:.4} max diff {} | crop identical min {:.4} mean {:.4} max diff {}",
            rows.len(),
            min(0),
            mean(0),
            max(1),
            min(2),
            mean(2),
            max(3)
        );
    }
}

/// Damaged JPEGs (every truncation length, flipped bytes) give errors or images, never a panic.
#[test]
fn damaged_jpegs_never_panic() {
    let good = std::fs::read(fixtures().join("restart.jpg")).unwrap();
    for len in 0..good.len() {
        let _ = polycnn::data::decode_bytes(&good[..len]);
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..3000 {
        let mut bad = good.clone();
        for _ in 0..3 {
            // xorshift: a fixed pseudo-random sequence, reproducible without a dependency
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % bad.len() as u64) as usize;
            bad[at] ^= (state >> 32) as u8 | 1;
        }
        let _ = polycnn::data::decode_bytes(&bad);
    }
}

// ---------------------------------------------------------------- loader and cache

/// Good images (the shipped JPEG fixtures: baseline with restarts, CMYK, progressive), a
/// truncated JPEG and a garbage file in a synset-prefixed folder.
fn folder_with_corrupt_images(name: &str) -> PathBuf {
    let dir = scratch(name);
    for (fixture, file) in [
        ("restart.jpg", "n01440764_tench.JPEG"),
        ("cmyk.jpg", "n01514859_hen.JPEG"),
        ("progressive.jpg", "n04008634_projectile.JPEG"),
    ] {
        std::fs::copy(fixtures().join(fixture), dir.join(file)).unwrap();
    }
    let jpeg = std::fs::read(fixtures().join("restart.jpg")).unwrap();
    std::fs::write(dir.join("n01494475_truncated.JPEG"), &jpeg[..jpeg.len() / 3]).unwrap();
    std::fs::write(dir.join("n01443537_garbage.JPEG"), b"this is not a JPEG at all").unwrap();
    dir
}

fn config(batch_size: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        normalize: Normalize::IMAGENET,
        prefetch: 2,
    }
}

#[test]
fn loader_skips_and_reports_corrupt_images() {
    let dir = folder_with_corrupt_images("corrupt");
    let classes = ClassIndex::torchvision();
    let ds = imagenet::open(&dir, &Layout::SynsetPrefixed, Some(&classes), Geometry::IMAGENET).unwrap();
    assert_eq!(ds.len(), 5);
    let ds: Arc<dyn Dataset> = Arc::new(ds);
    let batches: Vec<_> = Loader::new(ds.clone(), (0..ds.len()).collect(), config(2)).collect();
    assert_eq!(batches.len(), 3);
    let loaded: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    let failures: Vec<_> = batches.iter().flat_map(|b| b.failures.clone()).collect();
    assert_eq!(loaded.len(), 3);
    assert_eq!(failures.len(), 2);
    for f in &failures {
        assert!(
            f.source.contains("garbage") || f.source.contains("truncated"),
            "{}",
            f.source
        );
        assert!(f.error.to_string().contains(&f.source), "{}", f.error);
    }
    for b in &batches {
        assert_eq!(b.data.len(), b.len() * 3 * 224 * 224);
        assert_eq!(b.labels, b.indices.iter().map(|&i| ds.label(i)).collect::<Vec<_>>());
    }
    // Same tensors as one-at-a-time loading.
    let first = &batches[0];
    let alone = ds.load(first.indices[0], &Normalize::IMAGENET).unwrap();
    assert_eq!(&first.data[..alone.len()], &alone[..]);
    // Dropping a loader early must not hang.
    let mut early = Loader::new(ds.clone(), (0..ds.len()).collect(), config(1));
    assert!(early.next().is_some());
    drop(early);
}

#[test]
fn cache_round_trip_staleness_and_damage() {
    let dir = folder_with_corrupt_images("cache");
    let classes = ClassIndex::torchvision();
    let ds = imagenet::open(&dir, &Layout::SynsetPrefixed, Some(&classes), Geometry::IMAGENET).unwrap();
    let path = dir.join("cache.u8");

    let (cache, status) = CachedDataset::open_or_build(&ds, &path).unwrap();
    assert!(matches!(status, CacheStatus::Built { .. }), "{status:?}");
    assert_eq!((cache.len(), cache.shape()), (ds.len(), ds.shape()));
    for i in 0..ds.len() {
        assert_eq!(cache.label(i), ds.label(i));
        match (ds.load_u8(i), cache.load_u8(i)) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("image {i}: {a:?} vs {b:?}"),
        }
    }
    assert_eq!(cache.failures().len(), 2);
    drop(cache);

    let (_, status) = CachedDataset::open_or_build(&ds, &path).unwrap();
    assert_eq!(status, CacheStatus::Reused);

    // Another preprocessing → stale → rebuilt.
    let other = imagenet::open(
        &dir,
        &Layout::SynsetPrefixed,
        Some(&classes),
        Geometry::ResizeCenterCrop {
            resize: 64,
            crop: 56,
            interpolation: Interpolation::Bilinear,
        },
    )
    .unwrap();
    let (cache, status) = CachedDataset::open_or_build(&other, &path).unwrap();
    assert!(
        matches!(&status, CacheStatus::Built { reason } if reason.contains("stale")),
        "{status:?}"
    );
    assert_eq!(cache.shape(), [3, 56, 56]);
    assert_eq!(cache.load_u8(0).unwrap(), other.load_u8(0).unwrap());
    drop(cache);

    // A changed source file → stale.
    std::fs::write(dir.join("n01443537_garbage.JPEG"), b"different garbage").unwrap();
    let (_, status) = CachedDataset::open_or_build(&other, &path).unwrap();
    assert!(
        matches!(&status, CacheStatus::Built { reason } if reason.contains("stale")),
        "{status:?}"
    );

    // A damaged file → an error from `open`, a rebuild from `open_or_build`.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = CachedDataset::open(&path).unwrap_err();
    assert!(err.to_string().contains("not a valid polycnn cache"), "{err}");
    let (cache, status) = CachedDataset::open_or_build(&other, &path).unwrap();
    assert!(
        matches!(&status, CacheStatus::Built { reason } if reason.contains("unreadable")),
        "{status:?}"
    );

    // The loader runs on the cache like on any dataset, failures included.
    let cache: Arc<dyn Dataset> = Arc::new(cache);
    let batches: Vec<_> = Loader::new(cache.clone(), (0..cache.len()).collect(), config(4)).collect();
    assert_eq!(batches.iter().map(|b| b.failures.len()).sum::<usize>(), 2);
    assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), 3);
}

/// Throughput on this machine: `cargo test --release --test data -- --ignored throughput --nocapture`.
#[test]
#[ignore]
fn throughput() {
    if !has_data(&["imagenet", "cifar10"]) {
        return;
    }
    let time = |name: &str, ds: Arc<dyn Dataset>, normalize: Normalize| {
        let start = std::time::Instant::now();
        let config = LoaderConfig {
            batch_size: 64,
            normalize,
            prefetch: 2,
        };
        let n: usize = Loader::new(ds.clone(), (0..ds.len()).collect(), config)
            .map(|b| b.len())
            .sum();
        let s = start.elapsed().as_secs_f64();
        println!(
            "{name}: {n} images in {s:.2} s = {:.0} images/s ({} rayon threads)",
            n as f64 / s,
            rayon::current_num_threads()
        );
    };
    let imagenet = imagenet::open(
        &imagenet_dir("train_sample250"),
        &Layout::SynsetPrefixed,
        Some(&class_index()),
        Geometry::IMAGENET,
    )
    .unwrap();
    time(
        "ImageNet train_sample250 (decode + Resize(256) + CenterCrop(224) + normalise)",
        Arc::new(imagenet),
        Normalize::IMAGENET,
    );
    let val = imagenet::open(
        &imagenet_dir("val1300_227px/data"),
        &Layout::Flat {
            labels: imagenet_dir("val1300_227px/dataset.txt"),
        },
        None,
        Geometry::IMAGENET,
    )
    .unwrap();
    time("ImageNet val1300 227px", Arc::new(val), Normalize::IMAGENET);
    let jpg = cifar::class_folder_dataset(&shared().join("cifar10/test_jpg/test")).unwrap();
    time(
        "CIFAR-10 test_jpg (decode + normalise)",
        Arc::new(jpg),
        Normalize::CIFAR_VGG,
    );
    time(
        "CIFAR-10 lossless strip (in memory)",
        Arc::new(strip()),
        Normalize::IMAGENET,
    );
}

// ---------------------------------------------------------------- dataset roots (synthetic)

/// `root/<folder>/a.JPEG` for each folder: listing never decodes, so the files can be stubs.
fn stub_class_folders(root: &Path, folders: &[String]) {
    for folder in folders {
        std::fs::create_dir_all(root.join(folder)).unwrap();
        std::fs::write(root.join(folder).join("a.JPEG"), b"stub").unwrap();
    }
}

fn all_synsets() -> Vec<String> {
    let classes = ClassIndex::torchvision();
    (0..classes.len()).map(|i| classes.synset(i).to_string()).collect()
}

#[test]
fn the_built_in_class_order_is_torchvisions() {
    let builtin = ClassIndex::torchvision();
    assert_eq!(builtin.len(), 1000);
    let synsets = all_synsets();
    assert!(
        synsets.windows(2).all(|w| w[0] < w[1]),
        "torchvision's order is the sorted synsets"
    );
    assert_eq!(
        (builtin.index_of("n01440764"), builtin.index_of("n01514859")),
        (Some(0), Some(8))
    );
    // the same order as the class index file, where it is available
    if !has_data(&["imagenet/labels"]) {
        return;
    }
    let file = class_index();
    assert!((0..1000).all(|i| file.synset(i) == builtin.synset(i)));
}

#[test]
fn an_imagenet_root_with_a_validation_split_uses_it() {
    for split in ["val", "validation"] {
        let root = scratch(&format!("imagenet-root-{split}"));
        let synsets = all_synsets();
        stub_class_folders(&root.join(split), &synsets);
        // train/ beside it must not be read as a class
        stub_class_folders(&root.join("train"), &synsets[..3]);
        let opened = imagenet::open_validation(&root, None, None, Geometry::IMAGENET).unwrap();
        assert_eq!(opened.folder, root.join(split));
        assert!(opened.note.as_deref().unwrap().contains(split), "{:?}", opened.note);
        assert_eq!(opened.dataset.len(), 1000);
        assert_eq!((opened.dataset.label(0), opened.dataset.label(999)), (0, 999));
        // pointing at the split itself: no note
        let direct = imagenet::open_validation(&root.join(split), None, None, Geometry::IMAGENET).unwrap();
        assert!(direct.note.is_none());
    }
}

#[test]
fn class_folders_an_imagenet_model_cannot_label_are_errors_naming_the_folder() {
    // a root with train/ and test/ (no val/): folders that are not synsets
    let root = scratch("imagenet-not-synsets");
    stub_class_folders(&root, &["test".to_string(), "train".to_string()]);
    let err = imagenet::open_validation(&root, None, None, Geometry::IMAGENET).unwrap_err();
    assert_eq!(err.path, root.join("test"));
    assert!(
        err.message.contains("not an ImageNet-1k synset") && err.message.contains("--class-index"),
        "{err}"
    );
    // ten synset folders: a subset, refused without a class index, labelled by it with one
    let subset = scratch("imagenet-subset");
    let synsets = all_synsets();
    let ten: Vec<String> = synsets.iter().step_by(100).cloned().collect();
    stub_class_folders(&subset, &ten);
    let err = imagenet::open_validation(&subset, None, None, Geometry::IMAGENET).unwrap_err();
    assert_eq!(err.path, subset);
    assert!(err.message.contains("10 synset folders, not all 1000"), "{err}");
    let classes = ClassIndex::torchvision();
    let labelled = imagenet::open_validation(&subset, None, Some(&classes), Geometry::IMAGENET).unwrap();
    assert_eq!(
        (0..10).map(|i| labelled.dataset.label(i)).collect::<Vec<_>>(),
        (0..10).map(|i| i * 100).collect::<Vec<_>>()
    );
}

#[test]
fn a_labels_file_naming_an_image_twice_is_refused() {
    let dir = scratch("labels-twice");
    let lines = dir.join("val.txt");
    std::fs::write(&lines, "a.JPEG 1\nb.JPEG 2\na.JPEG 3\n").unwrap();
    let err = imagenet::read_labels(&lines, None).unwrap_err();
    assert!(err.message.contains("line 3") && err.message.contains("twice"), "{err}");
    let csv = dir.join("LOC_val_solution.csv");
    std::fs::write(
        &csv,
        "ImageId,PredictionString\nx,n01440764 1 2 3 4\nx,n01443537 1 2 3 4\n",
    )
    .unwrap();
    let err = imagenet::read_labels(&csv, Some(&ClassIndex::torchvision())).unwrap_err();
    assert!(err.message.contains("line 3") && err.message.contains("twice"), "{err}");
}

#[test]
fn cifar_roots_as_the_official_archives_unpack() {
    let data: Vec<u8> = (0..3 * 3072).map(|i| (i * 13 % 251) as u8).collect();
    let labels = [4u8, 0, 9];
    // cifar-10-binary.tar.gz: cifar-10-batches-bin/test_batch.bin, 3073-byte records
    let bin_root = scratch("cifar-root-bin");
    let bin = bin_root.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let records: Vec<u8> = labels
        .iter()
        .zip(data.chunks(3072))
        .flat_map(|(&l, px)| std::iter::once(l).chain(px.iter().copied()))
        .collect();
    std::fs::write(bin.join("test_batch.bin"), &records).unwrap();
    std::fs::write(bin.join("data_batch_1.bin"), b"training data is not read").unwrap();
    // cifar-10-python.tar.gz: cifar-10-batches-py/test_batch, a Python 2 pickle
    let py_root = scratch("cifar-root-py");
    let py = py_root.join("cifar-10-batches-py");
    std::fs::create_dir_all(&py).unwrap();
    std::fs::write(py.join("test_batch"), python2_batch(&data, &labels)).unwrap();
    for root in [&bin_root, &py_root] {
        let ds = cifar::open(root).unwrap();
        assert_eq!(ds.len(), 3, "{}", root.display());
        assert_eq!((0..3).map(|i| ds.label(i)).collect::<Vec<_>>(), [4, 0, 9]);
        assert_eq!(ds.load_u8(2).unwrap().data, &data[2 * 3072..]);
    }
    // an archive folder without the test batch says so
    let empty = scratch("cifar-root-empty");
    std::fs::create_dir_all(empty.join("cifar-10-batches-py")).unwrap();
    let err = cifar::open(&empty).err().unwrap();
    assert!(err.to_string().contains("no test_batch"), "{err}");
}
