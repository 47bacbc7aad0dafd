//! The summing kernels: exact integer sums `Σ c·a`, `Σ a` and `Σ c` over a
//! pixel buffer in the decoder's own layout, with every sample reduced to 8
//! bits as `to_rgba8` would reduce it, written so that the compiler
//! vectorises them. A leaf: it knows pixel layouts, not formats or decoders.

use image::ColorType;

use super::{Error, no_pixels, unsupported_color};

/// Sums of 8-bit channel values and their weight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Sums {
    pub(super) rgb: [u64; 3],
    pub(super) weight: u64,
}

impl Sums {
    pub(super) fn add(&mut self, other: Sums) {
        for (s, o) in self.rgb.iter_mut().zip(other.rgb) {
            *s += o;
        }
        self.weight += other.weight;
    }
}

/// Both sums of a buffer: `Σ c·a` with `Σ a`, and `Σ c` with the pixel count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct BothSums {
    weighted: Sums,
    plain: Sums,
}

impl BothSums {
    fn add(&mut self, other: BothSums) {
        self.weighted.add(other.weighted);
        self.plain.add(other.plain);
    }

    /// Sums of pixels without alpha, which weigh 255 each.
    fn opaque(rgb: [u64; 3], pixels: usize) -> BothSums {
        let plain = Sums {
            rgb,
            weight: pixels as u64,
        };
        BothSums {
            weighted: Sums {
                rgb: rgb.map(|s| s * 255),
                weight: plain.weight * 255,
            },
            plain,
        }
    }
}

/// Bytes per block of [`channel_sums`]: 768 KiB, a multiple of every pixel
/// size (1, 2, 3, 4, 6, 8, 12 and 16 bytes) and of the summing groups (48
/// and 64 bytes), so every block but the last holds whole groups.
const SUM_BLOCK: usize = 192 * 4096;

/// The sums the class is decided on: weighted by alpha, or plain when the
/// image is fully transparent.
pub(super) fn channel_sums(color: ColorType, pixels: &[u8]) -> Result<Sums, Error> {
    // The decoder wrote the buffer front to back, so its end is what the
    // caches still hold: summing from the end reads that part from cache
    // before the misses on the front evict it.
    let mut both = BothSums::default();
    for block in pixels.chunks(SUM_BLOCK).rev() {
        both.add(layout_sums(color, block).ok_or_else(|| unsupported_color(color))?);
    }
    let sums = if both.weighted.weight == 0 {
        both.plain
    } else {
        both.weighted
    };
    if sums.weight == 0 {
        return Err(no_pixels());
    }
    Ok(sums)
}

/// The sums of a buffer in the decoder's native layout, with samples
/// reduced to 8 bits as `to_rgba8` reduces them. `None` for a layout this
/// module does not know.
fn layout_sums(color: ColorType, buf: &[u8]) -> Option<BothSums> {
    Some(match color {
        ColorType::L8 => {
            let [l] = byte_sums::<1>(buf);
            BothSums::opaque([l; 3], buf.len())
        }
        ColorType::Rgb8 => BothSums::opaque(byte_sums::<3>(buf), buf.len() / 3),
        ColorType::La8 => {
            let ([l, a], [plain_l, _]) = alpha_sums::<2>(buf);
            BothSums {
                weighted: Sums {
                    rgb: [l; 3],
                    weight: a,
                },
                plain: Sums {
                    rgb: [plain_l; 3],
                    weight: buf.len() as u64 / 2,
                },
            }
        }
        ColorType::Rgba8 => {
            let ([r, g, b, a], [plain_r, plain_g, plain_b, _]) = alpha_sums::<4>(buf);
            BothSums {
                weighted: Sums {
                    rgb: [r, g, b],
                    weight: a,
                },
                plain: Sums {
                    rgb: [plain_r, plain_g, plain_b],
                    weight: buf.len() as u64 / 4,
                },
            }
        }
        ColorType::L16 => reduced(buf, u16_to_u8, ColorType::L8),
        ColorType::La16 => reduced(buf, u16_to_u8, ColorType::La8),
        ColorType::Rgb16 => reduced(buf, u16_to_u8, ColorType::Rgb8),
        ColorType::Rgba16 => reduced(buf, u16_to_u8, ColorType::Rgba8),
        ColorType::Rgb32F => reduced(buf, f32_to_u8, ColorType::Rgb8),
        ColorType::Rgba32F => reduced(buf, f32_to_u8, ColorType::Rgba8),
        _ => return None,
    })
}

/// True for the layouts [`layout_sums`] knows: decoding into any other
/// would be wasted.
pub(super) fn known_layout(color: ColorType) -> bool {
    use ColorType::*;
    matches!(
        color,
        L8 | La8 | Rgb8 | Rgba8 | L16 | La16 | Rgb16 | Rgba16 | Rgb32F | Rgba32F
    )
}

/// Samples per pass of [`reduced`]: a multiple of every channel count (1 to 4).
const REDUCE_SAMPLES: usize = 4080;

/// Reduces a buffer of `W`-byte samples to 8 bits, a stack-sized piece at a
/// time, and adds up the sums of each piece read as `narrow`.
fn reduced<const W: usize>(
    buf: &[u8],
    to_u8: impl Fn([u8; W]) -> u8,
    narrow: ColorType,
) -> BothSums {
    let mut total = BothSums::default();
    let mut piece = [0u8; REDUCE_SAMPLES];
    for wide in buf.chunks(REDUCE_SAMPLES * W) {
        let samples = wide.as_chunks::<W>().0;
        for (narrow, &sample) in piece.iter_mut().zip(samples) {
            *narrow = to_u8(sample);
        }
        if let Some(sums) = layout_sums(narrow, &piece[..samples.len()]) {
            total.add(sums);
        }
    }
    total
}

/// `image`'s 16-to-8-bit reduction: `round(c · 255 / 65535)`, which is
/// `(c + 128) / 257`, computed without a division. For grey and grey-alpha
/// `to_rgba8` takes a path through `f32`, `round(c as f32 · (1 / 65535) ·
/// 255)`, which gives the same byte for every one of the 65536 values (a unit
/// test checks them all).
fn u16_to_u8(sample: [u8; 2]) -> u8 {
    let x = u32::from(u16::from_ne_bytes(sample)) + 128;
    ((x - (x >> 8)) >> 8) as u8
}

/// `image`'s float-to-8-bit reduction: NaN and values from 1 up become 255,
/// values below 0 become 0, the rest `round(v · 255)`, halves rounding up.
fn f32_to_u8(sample: [u8; 4]) -> u8 {
    let v = f32::from_ne_bytes(sample);
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    let scaled = if !(v < 1.0) { 1.0 } else { v.max(0.0) } * 255.0;
    // `f32::round` and float-to-integer casts are slow on baseline x86-64.
    // Adding 2^23 instead rounds `scaled` (0..=255) to the nearest integer,
    // halves to even, and leaves that integer in the low mantissa bits; an
    // exact half rounded down is then bumped up. A test compares this with
    // `round` for every f32 bit pattern.
    const SHIFT: f32 = 8_388_608.0;
    let shifted = scaled + SHIFT;
    let half_rounded_down = scaled - (shifted - SHIFT) == 0.5;
    (shifted.to_bits() as u8) + u8::from(half_rounded_down)
}

// The summing loops below are written so that the compiler turns them into
// SIMD code: per-position `u16` lanes over groups of 48 or 64 bytes for
// plain sums, flushed every 257 groups (257 · 255 < 2^16), and pixels read as
// little-endian words for the products of colour and alpha, in `u32`
// accumulators over blocks small enough that they cannot overflow.

/// Groups of bytes whose lanes a `u16` can hold.
const U16_RUN: usize = 257;
const _: () = assert!(U16_RUN as u64 * 255 <= u16::MAX as u64);

/// Bytes at each position of `L`-byte groups, summed.
fn lane_sums<const L: usize>(groups: &[[u8; L]]) -> [u64; L] {
    let mut total = [0u64; L];
    for run in groups.chunks(U16_RUN) {
        let mut lanes = [0u16; L];
        for group in run {
            for (lane, &byte) in lanes.iter_mut().zip(group) {
                *lane += u16::from(byte);
            }
        }
        for (t, lane) in total.iter_mut().zip(lanes) {
            *t += u64::from(lane);
        }
    }
    total
}

/// Sums of the bytes at each position modulo `P` (the channels of a `P`-byte
/// pixel, `P` from 1 to 4); `buf.len()` is a multiple of `P`.
fn byte_sums<const P: usize>(buf: &[u8]) -> [u64; P] {
    // 48 is a multiple of 1, 2, 3 and 4: a lane always holds one channel.
    let (groups, tail) = buf.as_chunks::<48>();
    let mut total = [0u64; P];
    for (i, lane) in lane_sums(groups).into_iter().enumerate() {
        total[i % P] += lane;
    }
    for (i, &byte) in tail.iter().enumerate() {
        total[i % P] += u64::from(byte);
    }
    total
}

/// 64-byte groups per block in [`alpha_sums`]: 16 KiB, which stays in cache
/// between the plain and the weighted pass.
const ALPHA_BLOCK: usize = 256;
const _: () = assert!(ALPHA_BLOCK <= U16_RUN);
const _: () = assert!((ALPHA_BLOCK * 64 / 2) as u64 * 255 * 255 <= u32::MAX as u64);

/// For `P`-byte pixels whose last byte is alpha (`P` is 2 or 4): `Σ c·a` for
/// each colour byte with `Σ a` last, and the plain sums `Σ c` with `Σ a` last.
fn alpha_sums<const P: usize>(buf: &[u8]) -> ([u64; P], [u64; P]) {
    const { assert!(P == 2 || P == 4) };
    let mut weighted = [0u64; P];
    let mut plain = [0u64; P];
    let (groups, tail) = buf.as_chunks::<64>();
    for block in groups.chunks(ALPHA_BLOCK) {
        let mut sums = [0u64; P];
        for (i, lane) in lane_sums(block).into_iter().enumerate() {
            sums[i % P] += lane;
        }
        let alpha = sums[P - 1];
        let pixels = (block.len() * 64 / P) as u64;
        // Opaque and fully transparent blocks, the common cases, need no
        // multiplication.
        let products = if alpha == 255 * pixels {
            sums.map(|s| 255 * s)
        } else if alpha == 0 {
            [0; P]
        } else {
            weigh::<P>(block.as_flattened())
        };
        for c in 0..P - 1 {
            weighted[c] += products[c];
            plain[c] += sums[c];
        }
        weighted[P - 1] += alpha;
        plain[P - 1] += alpha;
    }
    for pixel in tail.as_chunks::<P>().0 {
        let alpha = u64::from(pixel[P - 1]);
        for c in 0..P - 1 {
            weighted[c] += u64::from(pixel[c]) * alpha;
            plain[c] += u64::from(pixel[c]);
        }
        weighted[P - 1] += alpha;
        plain[P - 1] += alpha;
    }
    (weighted, plain)
}

/// `Σ c·a` for each colour position of one [`alpha_sums`] block of `P`-byte
/// pixels; the alpha position is left at zero.
fn weigh<const P: usize>(block: &[u8]) -> [u64; P] {
    let mut total = [0u64; P];
    if P == 4 {
        let (mut r, mut g, mut b) = (0u32, 0u32, 0u32);
        for pixel in block.as_chunks::<4>().0 {
            let word = u32::from_le_bytes(*pixel);
            let alpha = word >> 24;
            r += (word & 0xff) * alpha;
            g += (word >> 8 & 0xff) * alpha;
            b += (word >> 16 & 0xff) * alpha;
        }
        total[..3].copy_from_slice(&[r, g, b].map(u64::from));
    } else {
        let mut l = 0u32;
        for pixel in block.as_chunks::<2>().0 {
            let word = u32::from(u16::from_le_bytes(*pixel));
            l += (word & 0xff) * (word >> 8);
        }
        total[0] = u64::from(l);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::super::Class;
    use super::super::testing::{Alpha, LAYOUTS, Rng, float_sample, naive_sums, synthetic};
    use super::*;
    use image::{DynamicImage, ImageBuffer, Luma, LumaA, Rgba};

    fn native_sums(image: &DynamicImage) -> Sums {
        channel_sums(image.color(), image.as_bytes()).unwrap()
    }

    #[test]
    fn native_sums_equal_to_rgba8_sums_for_every_layout() {
        let mut rng = Rng(0x5eed_cafe_f00d_0001);
        // Odd widths, single pixels, sizes that leave partial SIMD groups,
        // and some spanning several summing blocks.
        let sizes = [
            (1, 1),
            (1, 7),
            (3, 5),
            (7, 3),
            (13, 11),
            (33, 17),
            (257, 3),
            (5, 101),
            (300, 100),
        ];
        let mut cases = 0;
        for color in LAYOUTS {
            for &(w, h) in &sizes {
                let mut fills = vec![Alpha::Random];
                if color.has_alpha() {
                    fills.extend([
                        Alpha::Fixed(0),
                        Alpha::Fixed(255),
                        Alpha::Fixed(rng.below(254) + 1),
                        Alpha::Bands,
                    ]);
                }
                for alpha in fills {
                    let image = synthetic(color, w, h, &mut rng, alpha);
                    assert_eq!(
                        native_sums(&image),
                        naive_sums(&image),
                        "{color:?} {w}x{h} alpha {alpha:?}"
                    );
                    cases += 1;
                }
            }
        }
        assert!(cases > 200, "{cases} cases");
    }

    #[test]
    fn native_sums_are_exact_across_block_boundaries() {
        // Large enough to need many blocks in every kernel, all samples at
        // their maximum so an overflowing lane would show.
        let mut rng = Rng(7);
        for color in LAYOUTS {
            let (w, h) = (1031, 1063);
            let image = match color {
                ColorType::Rgb32F | ColorType::Rgba32F => {
                    synthetic(color, w, h, &mut rng, Alpha::Fixed(255))
                }
                _ => {
                    let len = (w * h) as usize * usize::from(color.bytes_per_pixel());
                    let raw = vec![0xffu8; len];
                    let sums = channel_sums(color, &raw).unwrap();
                    let pixels = u64::from(w * h);
                    assert_eq!(sums.rgb, [255 * 255 * pixels; 3], "{color:?}");
                    assert_eq!(sums.weight, 255 * pixels, "{color:?}");
                    continue;
                }
            };
            assert_eq!(native_sums(&image), naive_sums(&image), "{color:?}");
        }
        // The same with alpha 254 once in a while, so that every block goes
        // through the multiplying path with the largest products.
        let (w, h) = (1031u32, 1063u32);
        let mut rgba = vec![0xffu8; (w * h * 4) as usize];
        rgba.iter_mut()
            .skip(3)
            .step_by(4 * 997)
            .for_each(|a| *a = 254);
        let mut la = vec![0xffu8; (w * h * 2) as usize];
        la.iter_mut()
            .skip(1)
            .step_by(2 * 997)
            .for_each(|a| *a = 254);
        let images = [
            DynamicImage::from(ImageBuffer::<Rgba<u8>, _>::from_raw(w, h, rgba).unwrap()),
            DynamicImage::from(ImageBuffer::<LumaA<u8>, _>::from_raw(w, h, la).unwrap()),
        ];
        for image in images {
            assert_eq!(
                native_sums(&image),
                naive_sums(&image),
                "{:?}",
                image.color()
            );
        }
        // Random content over more than one block, against the naive sums.
        for color in [
            ColorType::Rgba8,
            ColorType::La8,
            ColorType::Rgb8,
            ColorType::L8,
        ] {
            let image = synthetic(color, 2047, 1601, &mut rng, Alpha::Random);
            assert_eq!(native_sums(&image), naive_sums(&image), "{color:?}");
        }
    }

    #[test]
    fn sample_reductions_match_to_rgba8_for_every_16_bit_value() {
        let all: Vec<u16> = (0..=u16::MAX).collect();
        let rgba: Vec<u16> = all.iter().flat_map(|&v| [v, v, v, v]).collect();
        let la: Vec<u16> = all.iter().flat_map(|&v| [v, v]).collect();
        let images = [
            DynamicImage::from(
                ImageBuffer::<Luma<u16>, _>::from_raw(256, 256, all.clone()).unwrap(),
            ),
            DynamicImage::from(ImageBuffer::<LumaA<u16>, _>::from_raw(256, 256, la).unwrap()),
            DynamicImage::from(ImageBuffer::<Rgba<u16>, _>::from_raw(256, 256, rgba).unwrap()),
        ];
        for image in images {
            let converted = image.to_rgba8();
            for (&v, p) in all.iter().zip(converted.pixels()) {
                let ours = u16_to_u8(v.to_ne_bytes());
                let alpha = if image.color().has_alpha() { ours } else { 255 };
                assert_eq!(
                    p.0,
                    [ours, ours, ours, alpha],
                    "{:?} value {v}",
                    image.color()
                );
            }
        }
    }

    #[test]
    fn sample_reductions_match_to_rgba8_for_floats_and_8_bit_grey() {
        let mut rng = Rng(99);
        let floats: Vec<f32> = (0..65536).map(|_| float_sample(&mut rng)).collect();
        let image = ImageBuffer::<Rgba<f32>, _>::from_raw(128, 128, floats.clone()).unwrap();
        let converted = DynamicImage::from(image).to_rgba8();
        for (&v, &c) in floats.iter().zip(converted.as_raw()) {
            assert_eq!(f32_to_u8(v.to_ne_bytes()), c, "value {v:?}");
        }
        // Grey reaches RGBA through f32 in `to_rgba8`; it must come back intact.
        let la: Vec<u8> = (0..=255u8)
            .flat_map(|l| (0..=255u8).flat_map(move |a| [l, a]))
            .collect();
        let image = ImageBuffer::<LumaA<u8>, _>::from_raw(256, 256, la.clone()).unwrap();
        let converted = DynamicImage::from(image).to_rgba8();
        for (la, p) in la.chunks_exact(2).zip(converted.pixels()) {
            assert_eq!(p.0, [la[0], la[0], la[0], la[1]]);
        }
    }

    /// The float reduction as `image` writes it, with `f32::round`.
    fn f32_to_u8_by_round(v: f32) -> u8 {
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let clamped = if !(v < 1.0) { 1.0 } else { v.max(0.0) };
        (clamped * 255.0).round() as u8
    }

    #[test]
    fn float_reduction_rounds_like_round_near_every_half() {
        // Every float within 4096 ulps of each (k + 0.5) / 255, where the
        // rounding is decided.
        for k in 0..255u32 {
            let edge = (k as f32 + 0.5) / 255.0;
            for ulps in -4096..=4096 {
                let v = f32::from_bits(edge.to_bits().wrapping_add_signed(ulps));
                assert_eq!(f32_to_u8(v.to_ne_bytes()), f32_to_u8_by_round(v), "{v:?}");
            }
        }
    }

    #[test]
    #[ignore = "four billion cases: run in release with --ignored"]
    fn float_reduction_rounds_like_round_for_every_f32() {
        for bits in 0..=u32::MAX {
            let v = f32::from_bits(bits);
            assert_eq!(
                f32_to_u8(v.to_ne_bytes()),
                f32_to_u8_by_round(v),
                "{bits:#x}"
            );
        }
    }

    #[test]
    fn alpha_weighting_and_the_transparent_fallback() {
        // An opaque green pixel beside a barely visible blue one: green.
        let rgba = [0, 200, 0, 255, 0, 0, 255, 1];
        let sums = channel_sums(ColorType::Rgba8, &rgba).unwrap();
        assert_eq!(
            sums,
            Sums {
                rgb: [0, 200 * 255, 255],
                weight: 256
            }
        );
        // All transparent: the plain means decide, over the pixel count.
        let rgba = [10, 20, 250, 0, 30, 40, 200, 0];
        let sums = channel_sums(ColorType::Rgba8, &rgba).unwrap();
        assert_eq!(
            sums,
            Sums {
                rgb: [40, 60, 450],
                weight: 2
            }
        );
        assert_eq!(Class::of_sums(sums.rgb), Class::Blue);
    }
}
