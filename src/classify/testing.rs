//! Test data for the classify tests: a small deterministic generator,
//! synthetic images of every pixel layout, and the rule applied the slow,
//! obvious way to check the kernels against.

use super::sums::Sums;
use image::{ColorType, DynamicImage, ImageBuffer, Luma, LumaA, Rgb, Rgba};

/// xorshift64*: a small deterministic generator for test data.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The rule applied the slow, obvious way: convert with `to_rgba8`, then
/// sum pixel by pixel.
pub(super) fn naive_sums(image: &DynamicImage) -> Sums {
    let rgba = image.to_rgba8();
    let mut weighted = Sums::default();
    let mut plain = Sums::default();
    for p in rgba.pixels() {
        let [r, g, b, a] = p.0.map(u64::from);
        weighted.add(Sums {
            rgb: [r * a, g * a, b * a],
            weight: a,
        });
        plain.add(Sums {
            rgb: [r, g, b],
            weight: 1,
        });
    }
    if weighted.weight == 0 {
        plain
    } else {
        weighted
    }
}

/// Every pixel layout the kernels know.
pub(super) const LAYOUTS: [ColorType; 10] = [
    ColorType::L8,
    ColorType::La8,
    ColorType::Rgb8,
    ColorType::Rgba8,
    ColorType::L16,
    ColorType::La16,
    ColorType::Rgb16,
    ColorType::Rgba16,
    ColorType::Rgb32F,
    ColorType::Rgba32F,
];

/// A float sample: often one of the awkward values, else anything from
/// well below 0 to well above 1, or just either side of a rounding edge.
pub(super) fn float_sample(rng: &mut Rng) -> f32 {
    const SPECIAL: [f32; 9] = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        0.0,
        1.0,
        f32::MIN_POSITIVE,
        f32::EPSILON,
        1.0 - f32::EPSILON,
    ];
    match rng.below(4) {
        0 => SPECIAL[rng.below(SPECIAL.len() as u64) as usize],
        1 => {
            let edge = (rng.below(255) as f32 + 0.5) / 255.0;
            let ulps = rng.below(5) as i32 - 2;
            f32::from_bits(edge.to_bits().wrapping_add_signed(ulps))
        }
        _ => (rng.below(1 << 24) as f32 / (1 << 23) as f32) - 0.5,
    }
}

/// How [`synthetic`] fills the alpha channel.
#[derive(Debug, Clone, Copy)]
pub(super) enum Alpha {
    /// Like the colour channels.
    Random,
    /// Everywhere this fraction of the maximum, in 255ths.
    Fixed(u64),
    /// Bands of 9000 pixels: transparent, opaque, random, and again, so
    /// that the summing blocks see each kind whole and mixed.
    Bands,
}

/// An image of the given layout with random samples.
pub(super) fn synthetic(
    color: ColorType,
    width: u32,
    height: u32,
    rng: &mut Rng,
    alpha: Alpha,
) -> DynamicImage {
    let channels = usize::from(color.channel_count());
    let samples = (width * height) as usize * channels;
    // The alpha of sample `i`, in 255ths, or `None` for a random one.
    let fixed = |i: usize| -> Option<u64> {
        if !color.has_alpha() || i % channels != channels - 1 {
            return None;
        }
        match alpha {
            Alpha::Random => None,
            Alpha::Fixed(a) => Some(a),
            Alpha::Bands => [Some(0), Some(255), None][i / channels / 9000 % 3],
        }
    };
    macro_rules! ints {
        ($t:ty) => {
            (0..samples)
                .map(|i| match fixed(i) {
                    Some(a) => (a * u64::from(<$t>::MAX) / 255) as $t,
                    None => rng.below(u64::from(<$t>::MAX) + 1) as $t,
                })
                .collect::<Vec<$t>>()
        };
    }
    let floats = |rng: &mut Rng| {
        (0..samples)
            .map(|i| match fixed(i) {
                Some(a) => a as f32 / 255.0,
                None => float_sample(rng),
            })
            .collect::<Vec<f32>>()
    };
    match color {
        ColorType::L8 => {
            ImageBuffer::<Luma<u8>, _>::from_raw(width, height, ints!(u8)).map(DynamicImage::from)
        }
        ColorType::La8 => {
            ImageBuffer::<LumaA<u8>, _>::from_raw(width, height, ints!(u8)).map(DynamicImage::from)
        }
        ColorType::Rgb8 => {
            ImageBuffer::<Rgb<u8>, _>::from_raw(width, height, ints!(u8)).map(DynamicImage::from)
        }
        ColorType::Rgba8 => {
            ImageBuffer::<Rgba<u8>, _>::from_raw(width, height, ints!(u8)).map(DynamicImage::from)
        }
        ColorType::L16 => {
            ImageBuffer::<Luma<u16>, _>::from_raw(width, height, ints!(u16)).map(DynamicImage::from)
        }
        ColorType::La16 => ImageBuffer::<LumaA<u16>, _>::from_raw(width, height, ints!(u16))
            .map(DynamicImage::from),
        ColorType::Rgb16 => {
            ImageBuffer::<Rgb<u16>, _>::from_raw(width, height, ints!(u16)).map(DynamicImage::from)
        }
        ColorType::Rgba16 => {
            ImageBuffer::<Rgba<u16>, _>::from_raw(width, height, ints!(u16)).map(DynamicImage::from)
        }
        ColorType::Rgb32F => {
            ImageBuffer::<Rgb<f32>, _>::from_raw(width, height, floats(rng)).map(DynamicImage::from)
        }
        ColorType::Rgba32F => ImageBuffer::<Rgba<f32>, _>::from_raw(width, height, floats(rng))
            .map(DynamicImage::from),
        _ => None,
    }
    .unwrap()
}
