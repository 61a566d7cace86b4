//! Images of an image-folder dataset (prism-store `dataset`, kind image folder): the PNG/JPEG
//! decode and the preprocessing (resize, centre crop, channels) of a one-image folder.
//!
//! The first byte picks the options (bit 0: grayscale, bit 1: resize the shorter side to 8,
//! bit 2: crop 6×6, bit 3: a `.jpg` name rather than `.png`); the rest is the file.
use prism_store::{Dataset, DatasetKind, DatasetOptions, Preprocess, Resize};

/// One fuzz input (see the module documentation).
pub fn run(data: &[u8]) {
    let Some((&mode, image)) = data.split_first() else {
        return;
    };
    let root = crate::fresh_dir("images");
    let class = root.join("class");
    std::fs::create_dir(&class).expect("creating the class folder");
    let name = if mode & 8 != 0 { "a.jpg" } else { "a.png" };
    std::fs::write(class.join(name), image).expect("writing the image");
    let options = DatasetOptions {
        kind: Some(DatasetKind::ImageFolder),
        labels: None,
        preprocess: Preprocess {
            channels: Some(if mode & 1 != 0 { 1 } else { 3 }),
            resize: (mode & 2 != 0).then_some(Resize::Shorter(8)),
            crop: (mode & 4 != 0).then_some([6, 6]),
            ..Preprocess::default()
        },
    };
    let Ok(ds) = Dataset::open(&root, &options) else {
        return;
    };
    let _ = ds.read(&[0]);
}
