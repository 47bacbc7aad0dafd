//! Images that carry more than their pixels, against the real server:
//! metadata that inflates far beyond the upload, trailers after a JPEG's
//! end, truncated scans, TIFF defaults and tables, and the codes that tell
//! a pixel limit from a decoder limit.

mod common {
    pub mod bombs;
    pub mod conn;
    pub mod fixtures;
    pub mod procfs;
    pub mod server;
    pub mod stored;
    pub mod wait;
}

use common::conn::code;
use common::fixtures::{seal, test_data};
use common::server::TestServer;
use std::borrow::Cow;
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

/// The memory budget the servers here run with.
const BUDGET_MIB: u64 = 256;

/// What the server may hold beyond its budget and its RSS at start: the
/// connection threads and their buffers, and what reading headers takes
/// before memory is reserved (`classify::open_memory` of the upload, each).
const OVERHEAD_MIB: u64 = 64;

/// A PNG chunk: length, type, data, CRC.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[4..]);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|n| {
            (0..8).fold(n, |c, _| {
                if c & 1 != 0 {
                    c >> 1 ^ 0xEDB8_8320
                } else {
                    c >> 1
                }
            })
        })
        .collect();
    !bytes.iter().fold(!0u32, |crc, &b| {
        table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ crc >> 8
    })
}

/// A `width`×`height` RGB PNG of one colour, with an ICC profile of
/// `icc` zero bytes (compressed by the encoder, about 1000 to 1).
fn png_with_icc(rgb: [u8; 3], width: u32, height: u32, icc: usize) -> Vec<u8> {
    let mut info = png::Info::with_size(width, height);
    info.color_type = png::ColorType::Rgb;
    info.bit_depth = png::BitDepth::Eight;
    info.icc_profile = Some(Cow::Owned(vec![0; icc]));
    let mut out = Vec::new();
    let mut writer = png::Encoder::with_info(&mut out, info)
        .unwrap()
        .write_header()
        .unwrap();
    let pixels: Vec<u8> = rgb
        .iter()
        .copied()
        .cycle()
        .take(width as usize * height as usize * 3)
        .collect();
    writer.write_image_data(&pixels).unwrap();
    writer.finish().unwrap();
    out
}

/// `png` with `extra` chunks after its IHDR (the signature and IHDR are
/// its first 33 bytes).
fn with_chunks(png: &[u8], extra: &[u8]) -> Vec<u8> {
    [&png[..33], extra, &png[33..]].concat()
}

/// Uploads `payload` with PUT on a connection of its own, again while
/// the server answers `busy`, until `deadline`; returns the last reply.
fn put_until_not_busy(s: &TestServer, name: &str, payload: &[u8], deadline: Instant) -> String {
    let mut c = s.connect();
    loop {
        let reply = c.upload("PUT", name, payload);
        if !reply.starts_with("ERR busy") || Instant::now() > deadline {
            return reply;
        }
        // A short pause before trying again: the budget frees as others finish.
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metadata_bombs_are_never_inflated_and_peak_memory_stays_within_the_budget() {
    let budget = format!("{BUDGET_MIB}M");
    let s = TestServer::start(&["--max-memory", &budget]);
    let start = s.proc_status("VmHWM");

    // 40 PNGs of 2048x2048 whose ICC profile inflates to 190 MiB, each
    // made distinct by a text chunk so that none is a duplicate.
    let bomb = png_with_icc([20, 40, 200], 2048, 2048, 190 << 20);
    let bombs: Vec<Vec<u8>> = (0..40)
        .map(|i| with_chunks(&bomb, &chunk(b"tEXt", format!("n\0{i}").as_bytes())))
        .collect();
    // A 1x1 PNG with 3,000,000 tiny text chunks (45 MB).
    let tiny = common::fixtures::png([220, 30, 30], 1, 1);
    let texts = chunk(b"tEXt", b"k\0v").repeat(3_000_000);
    let text_bomb = with_chunks(&tiny, &texts);
    eprintln!(
        "iCCP bombs: {} bytes each, text bomb: {} bytes",
        bombs[0].len(),
        text_bomb.len()
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    let replies: Vec<(String, String)> = thread::scope(|scope| {
        let s = &s;
        let mut handles: Vec<_> = bombs
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                scope.spawn(move || {
                    let name = format!("icc-{i}.png");
                    let reply = put_until_not_busy(s, &name, bytes, deadline);
                    (name, reply)
                })
            })
            .collect();
        handles.push(scope.spawn(|| {
            let reply = put_until_not_busy(s, "text.png", &text_bomb, deadline);
            ("text.png".to_string(), reply)
        }));
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let mut s = s;
    assert!(s.child.try_wait().unwrap().is_none(), "the server died");
    let mut c = s.connect();
    assert_eq!(c.ask("PING"), "OK PONG");
    for (name, reply) in &replies {
        assert!(reply.starts_with("OK "), "{name}: {reply}");
    }
    assert_eq!(s.files("not_trusted").len(), 41);
    let peak = s.proc_status("VmHWM");
    let bound = start + (BUDGET_MIB + OVERHEAD_MIB) * 1024;
    eprintln!(
        "metadata bombs: VmHWM {start} kB at start, {peak} kB at peak; bound {bound} kB \
         (start + {BUDGET_MIB} MiB budget + {OVERHEAD_MIB} MiB)"
    );
    assert!(peak <= bound, "peak RSS {peak} kB over {bound} kB");
}

#[test]
fn pixel_limits_decoder_limits_and_unsupported_variants_each_have_their_reply() {
    let s = TestServer::start(&[]);
    let mut c = s.connect();
    let fixture = |name: &str| fs::read(test_data(&format!("images/{name}"))).unwrap();
    let tiny = common::fixtures::png([220, 30, 30], 1, 1);
    let mut text = b"Comment\0".to_vec();
    text.resize(50 << 20, b'x');
    // (name, bytes, the reply's start)
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // Text is never read, however large.
        (
            "text.png",
            with_chunks(&tiny, &chunk(b"tEXt", &text)),
            "OK ",
        ),
        // An eXIf chunk is kept, in proportion to the upload.
        (
            "exif.png",
            with_chunks(&tiny, &chunk(b"eXIf", &vec![0; 2 << 20])),
            "OK ",
        ),
        // A strip table the file does not hold is corrupt; tag values that
        // would take more to read than the file's header may are too
        // complex; a file of 20000 strips is an image.
        (
            "strips.tiff",
            fixture("fail_bogus_strips.tiff"),
            "ERR not-an-image ",
        ),
        (
            "lists.tiff",
            common::bombs::tiff_tag_list(1 << 20, common::bombs::TiffType::Byte),
            "ERR too-complex ",
        ),
        ("tall.tiff", fixture("blue_tall_strips.tiff"), "OK "),
        ("bomb.png", fixture("fail_bomb.png"), "ERR too-many-pixels "),
        (
            "arithmetic.jpg",
            fixture("fail_arithmetic.jpg"),
            "ERR not-an-image unsupported image: arithmetic-coded jpeg",
        ),
        (
            "cut.jpg",
            fixture("fail_truncated_eoi.jpg"),
            "ERR not-an-image ",
        ),
        (
            "heic.heic",
            b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec(),
            "ERR not-an-image unsupported image: heic",
        ),
    ];
    for (name, bytes, want) in &cases {
        let reply = c.upload("PUT", name, bytes);
        assert!(reply.starts_with(want), "{name}: {reply}");
    }
    // Photos as phones and cameras write them are filed by their pixels:
    // a Motion Photo's video and a second picture after the first are not
    // the image, and 32-bit TIFF samples are unsigned unless tagged.
    for (file, folder) in [
        ("photo_coffee_motion.jpg", "red"),
        ("red_mpf.jpg", "red"),
        ("blue_u32.tiff", "blue"),
        ("red_metadata_bombs.png", "red"),
    ] {
        let reply = c.upload("SEAL", file, &seal(&fixture(file)));
        assert!(reply.starts_with("OK "), "{file}: {reply}");
        assert_eq!(s.files(folder), vec![file.to_string()], "{file}");
        fs::remove_file(s.data.join(folder).join(file)).unwrap();
    }
    assert_eq!(code(&c.upload("PUT", "x", b"not an image")), "not-an-image");
}
