//! The HTML of the page: its inline style, a section per folder with its
//! count, and a card per image with its thumbnail (linked or embedded),
//! swatch, name, means and signer; with the escaping that text and file
//! names need in HTML and URLs.

use super::signer::{Signed, signer};
use super::{Item, Summary, THUMBS};
use crate::allowed_signers::AllowedSigners;
use crate::store::Folder;
use base64ct::{Base64, Encoding};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

const STYLE: &str = "\
:root{color-scheme:light dark;--card:#f4f4f5;--muted:#666}\
@media (prefers-color-scheme:dark){:root{--card:#1f1f23;--muted:#aaa}}\
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;padding:1rem 1.5rem;max-width:1400px}\
header h1{margin:.2rem 0}header p{color:var(--muted);margin:.2rem 0 1rem}\
nav a{margin-right:1rem}\
h2{border-bottom:1px solid var(--muted);padding-bottom:.3rem;margin-top:2rem}\
h2 .count{font-weight:normal;color:var(--muted)}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:.8rem}\
figure{margin:0;background:var(--card);border-radius:6px;padding:.5rem;overflow:hidden}\
figure img,.none{display:block;width:100%;height:160px;object-fit:contain;background:#8883}\
.none{display:flex;align-items:center;justify-content:center;color:var(--muted)}\
figcaption{margin-top:.4rem;display:grid;grid-template-columns:1.2rem 1fr;gap:.1rem .4rem;align-items:center}\
.swatch{width:1.2rem;height:1.2rem;border-radius:3px;border:1px solid #8888;grid-row:span 2}\
.name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-weight:600}\
.rgb{color:var(--muted);font:12px ui-monospace,monospace}\
.signer{grid-column:2;color:var(--muted);font-size:12px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}\
.red{--accent:#d33}.green{--accent:#2a2}.blue{--accent:#36d}.not_trusted{--accent:#999}\
section h2{border-color:var(--accent)}";

/// The page.
pub(super) fn render(
    data: &Path,
    items: &[Item],
    summary: &Summary,
    embed: bool,
    signers: Option<&AllowedSigners>,
) -> String {
    let total: usize = summary.counts.iter().sum();
    let mut page = String::with_capacity(1024 + items.len() * 400);
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>colorsort gallery</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>colorsort</h1><p>{total} image(s) in {}, made {}</p><nav>",
        escape(&data.display().to_string()),
        crate::log::timestamp(std::time::SystemTime::now())
    );
    for folder in Folder::ALL {
        let _ = write!(
            page,
            "<a href=\"#{folder}\">{folder} ({})</a>",
            summary.counts[folder as usize]
        );
    }
    page.push_str("</nav></header>\n");
    for folder in Folder::ALL {
        let count = summary.counts[folder as usize];
        let _ = write!(
            page,
            "<section id=\"{folder}\" class=\"{folder}\" data-folder=\"{folder}\" data-count=\"{count}\">\n\
             <h2>{folder} <span class=\"count\">{count}</span></h2>\n<div class=\"grid\">\n"
        );
        for item in items.iter().filter(|i| i.folder == folder) {
            card(&mut page, data, item, embed, signers);
        }
        page.push_str("</div>\n</section>\n");
    }
    page.push_str("</body>\n</html>\n");
    page
}

fn card(
    page: &mut String,
    data: &Path,
    item: &Item,
    embed: bool,
    signers: Option<&AllowedSigners>,
) {
    let name = escape(&item.name);
    // A thumbnail that could not be cached can only be embedded.
    let src = match (&item.thumb, embed || item.jpeg.is_some()) {
        (Some(thumb), false) => Some(format!("{THUMBS}/{}/{}", item.folder, percent(thumb))),
        (Some(thumb), true) => item
            .jpeg
            .clone()
            .or_else(|| fs::read(data.join(THUMBS).join(item.folder.as_str()).join(thumb)).ok())
            .map(|jpeg| format!("data:image/jpeg;base64,{}", Base64::encode_string(&jpeg))),
        (None, _) => None,
    };
    let picture = match src {
        Some(src) => format!("<img src=\"{src}\" alt=\"{name}\" loading=\"lazy\">"),
        None => "<div class=\"none\">not an image</div>".to_string(),
    };
    let picture = if embed || item.thumb.is_none() {
        picture
    } else {
        format!(
            "<a href=\"{}/{}\">{picture}</a>",
            item.folder,
            percent(&item.name)
        )
    };
    let (swatch, rgb) = match item.mean {
        Some([r, g, b]) => (
            format!("rgb({},{},{})", r.round(), g.round(), b.round()),
            format!("r={r:.1} g={g:.1} b={b:.1}"),
        ),
        None => ("transparent".to_string(), "-".to_string()),
    };
    let signer = match signer(data, item, signers) {
        None => String::new(),
        Some(Signed::By { label, title }) => format!(
            "<span class=\"signer\" title=\"{}\">signed by {}</span>",
            escape(&title),
            escape(&label)
        ),
        Some(Signed::Unreadable(why)) => format!(
            "<span class=\"signer\" title=\"{}\">signature unreadable</span>",
            escape(&why)
        ),
    };
    let _ = writeln!(
        page,
        "<figure>{picture}<figcaption><span class=\"swatch\" style=\"background:{swatch}\"></span>\
         <span class=\"name\" title=\"{name}\">{name}</span><span class=\"rgb\">{rgb}</span>{signer}</figcaption></figure>"
    );
}

/// Escapes text for HTML content and attribute values.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Percent-encodes a file name for a relative URL.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(percent("a b/ü.png"), "a%20b%2F%C3%BC.png");
    }
}
