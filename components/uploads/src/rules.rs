//! The uploads component's rules as plain functions: which files are
//! accepted (by magic bytes), how names are sanitised, and the HTTP
//! details of downloads (`Content-Disposition`, `If-None-Match`, `Range`).
//!
//! The type rule: the stored type is the one the file's first bytes show —
//! JPEG (`FF D8 FF`), PNG (`89 50 4E 47 0D 0A 1A 0A`), GIF (`GIF87a` /
//! `GIF89a`) or PDF (`%PDF-`). The claimed `Content-Type` and the name's
//! extension are ignored for that decision; anything else is refused (415).
//! The stored name always ends with an extension of the stored type: when
//! the sanitised name does not, the type's extension is appended (a PNG
//! sent as `cat.pdf` is stored as `image/png` named `cat.pdf.png`), so
//! nothing the client said is silently dropped and nothing downloaded is
//! mislabelled.

/// Largest stored value: the bytes of a file are kept in chunks of at most
/// this size.
pub const CHUNK_SIZE: usize = 1024 * 1024;

/// Files one request may carry.
pub const MAX_FILES: usize = 5;

/// `upload_limit_bytes` when not set: 5 MiB per file.
pub const DEFAULT_UPLOAD_LIMIT: u64 = 5 * 1024 * 1024;

/// Room for the multipart framing (boundaries, part headers) on top of
/// [`MAX_FILES`] files of the limit.
pub const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// Longest stored name, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 200;

/// The name of a file that arrives without one (or whose name sanitises
/// to nothing).
pub const DEFAULT_NAME: &str = "upload";

/// The accepted file types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Jpeg,
    Png,
    Gif,
    Pdf,
}

impl FileType {
    pub const ALL: [FileType; 4] = [FileType::Jpeg, FileType::Png, FileType::Gif, FileType::Pdf];

    pub fn media_type(self) -> &'static str {
        match self {
            FileType::Jpeg => "image/jpeg",
            FileType::Png => "image/png",
            FileType::Gif => "image/gif",
            FileType::Pdf => "application/pdf",
        }
    }

    pub fn from_media_type(text: &str) -> Option<FileType> {
        FileType::ALL.into_iter().find(|t| t.media_type() == text)
    }

    /// Extensions names of this type may end with (lower case), the one
    /// appended first.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            FileType::Jpeg => &["jpg", "jpeg", "jpe", "jfif"],
            FileType::Png => &["png"],
            FileType::Gif => &["gif"],
            FileType::Pdf => &["pdf"],
        }
    }

    fn signatures(self) -> &'static [&'static [u8]] {
        match self {
            FileType::Jpeg => &[b"\xFF\xD8\xFF"],
            FileType::Png => &[b"\x89PNG\r\n\x1A\n"],
            FileType::Gif => &[b"GIF87a", b"GIF89a"],
            FileType::Pdf => &[b"%PDF-"],
        }
    }
}

/// What the first bytes of a file tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    Known(FileType),
    /// Too few bytes yet: they could still begin an accepted file.
    NeedMore,
    /// Not an accepted type, whatever follows.
    Refused,
}

/// The type of a file starting with `prefix`.
pub fn sniff(prefix: &[u8]) -> Sniff {
    let mut could_be = false;
    for file_type in FileType::ALL {
        for signature in file_type.signatures() {
            if prefix.starts_with(signature) {
                return Sniff::Known(file_type);
            }
            could_be |= prefix.len() < signature.len() && signature.starts_with(prefix);
        }
    }
    if could_be {
        Sniff::NeedMore
    } else {
        Sniff::Refused
    }
}

/// Characters that reorder or hide text (bidirectional overrides,
/// zero-width characters): they make `gpj.exe` look like `exe.jpg`.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A client's file name made safe to store and send back: only the part
/// after the last `/` or `\`; no control or invisible characters; the
/// characters Windows forbids (`<>:"|?*`) replaced by `_`; runs of dots
/// collapsed (no `..`); no leading or trailing dots or spaces; at most
/// [`MAX_NAME_BYTES`] bytes (the extension kept). Empty → [`DEFAULT_NAME`].
pub fn sanitize_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mut name = String::with_capacity(last.len());
    for c in last.chars() {
        if c.is_control() || is_invisible(c) {
            continue;
        }
        if c == '.' && name.ends_with('.') {
            continue;
        }
        name.push(if "<>:\"|?*".contains(c) { '_' } else { c });
    }
    let name = name.trim_matches(|c: char| c == '.' || c.is_whitespace());
    if name.is_empty() {
        return DEFAULT_NAME.to_string();
    }
    bound_length(name, MAX_NAME_BYTES)
}

/// The extension of `name` (after the last dot), if it has a short one.
fn extension(name: &str) -> Option<&str> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty() && ext.len() <= 16 && !ext.contains(' ')).then_some(ext)
}

/// `name` cut to at most `max` bytes at a character boundary, shortening
/// the part before the extension.
fn bound_length(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let ext = extension(name).map(|e| format!(".{e}")).unwrap_or_default();
    let stem = &name[..name.len() - ext.len()];
    let mut cut = max.saturating_sub(ext.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    let stem = stem[..cut].trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    format!("{stem}{ext}")
}

/// The name a file of `file_type` is stored under: the sanitised client
/// name, with the type's extension appended unless it already has one of
/// them (see the module documentation).
pub fn stored_name(client_name: Option<&str>, file_type: FileType) -> String {
    let name = sanitize_name(client_name.unwrap_or(""));
    let fits = extension(&name).is_some_and(|ext| {
        file_type
            .extensions()
            .contains(&ext.to_ascii_lowercase().as_str())
    });
    if fits {
        return name;
    }
    let ext = file_type.extensions()[0];
    let stem = bound_length(&name, MAX_NAME_BYTES - ext.len() - 1);
    format!("{stem}.{ext}")
}

/// `%XX` sequences decoded (as UTF-8, lossily; invalid escapes kept as
/// they are); `+` stays a plus (unlike a query string).
pub fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The parameters of a header like `attachment; filename="a;b.png"`, names
/// lower-cased, quoted values unquoted.
fn header_params(value: &str) -> Vec<(String, String)> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        match c {
            _ if escaped => {
                current.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect()
}

/// The file name of a raw-body upload: `Content-Disposition`'s
/// `filename*=UTF-8''...` (RFC 5987) or `filename=`, else `X-File-Name`
/// (percent-decoded, so clients can send any UTF-8 name).
pub fn raw_file_name(
    content_disposition: Option<&str>,
    x_file_name: Option<&str>,
) -> Option<String> {
    if let Some(header) = content_disposition {
        let params = header_params(header);
        let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        if let Some(extended) = param("filename*")
            && let Some((charset, rest)) = extended.split_once('\'')
            && let Some((_, encoded)) = rest.split_once('\'')
            && charset.eq_ignore_ascii_case("utf-8")
        {
            return Some(percent_decode(encoded));
        }
        if let Some(plain) = param("filename") {
            return Some(plain.clone());
        }
    }
    x_file_name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(percent_decode)
}

/// Whether a `Content-Type` is `multipart/form-data`.
pub fn is_form_data(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart/form-data"))
}

/// Bytes escaped in an RFC 5987 `ext-value`: all but `attr-char`
/// (alphanumerics and ``!#$&+-.^_`|~``).
const ATTR_CHAR_ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `Content-Disposition` of a download: `attachment`, an ASCII fallback
/// `filename` and the exact name as `filename*=UTF-8''...` (RFC 6266).
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(name, ATTR_CHAR_ENCODED);
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// `"<sha256>"`: a file's entity tag.
pub fn etag(sha256: &str) -> String {
    format!("\"{sha256}\"")
}

/// Whether `If-None-Match` names `etag` (weak comparison, `*` matches
/// anything), i.e. whether the answer is 304.
pub fn none_match(if_none_match: Option<&str>, etag: &str) -> bool {
    let Some(header) = if_none_match.map(str::trim) else {
        return false;
    };
    header == "*"
        || header
            .split(',')
            .map(|tag| tag.trim())
            .any(|tag| tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Whether `If-Range` lets a `Range` apply: absent, or the current entity
/// tag (strong comparison). A date or another tag means "send it all".
pub fn if_range_holds(if_range: Option<&str>, etag: &str) -> bool {
    if_range.is_none_or(|tag| tag.trim() == etag)
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: the whole file (200). Invalid, multi-range and
    /// non-byte ranges are ignored, as RFC 9110 allows.
    Full,
    /// Bytes `start..=end` (206).
    Partial { start: u64, end: u64 },
    /// A valid range outside the file (416).
    Unsatisfiable,
}

/// Parses a single `Range: bytes=a-b` / `bytes=a-` / `bytes=-n`.
///
/// Kept by hand (not `http-range-header` or `headers`): the API answers a
/// multi-range or malformed `Range` with the whole file (200), as RFC 9110
/// allows and the uploads tests pin, where those crates reject or return
/// several ranges; swapping them in is not yet measured or verified.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(header) = header.map(str::trim) else {
        return RangeRequest::Full;
    };
    let Some((unit, spec)) = header.split_once('=') else {
        return RangeRequest::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (number(first), number(last), last.trim().is_empty()) {
        // bytes=-n: the last n bytes.
        (None, Some(n), _) if first.trim().is_empty() => {
            if n == 0 || size == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial {
                    start: size.saturating_sub(n),
                    end: size - 1,
                }
            }
        }
        // bytes=a-
        (Some(start), None, true) => {
            if start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial {
                    start,
                    end: size - 1,
                }
            }
        }
        // bytes=a-b
        (Some(start), Some(end), _) if start <= end => {
            if start >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial {
                    start,
                    end: end.min(size - 1),
                }
            }
        }
        _ => RangeRequest::Full,
    }
}

/// The chunk numbers that hold bytes `start..=end`.
pub fn chunks_covering(start: u64, end: u64, chunk_size: u64) -> std::ops::RangeInclusive<u64> {
    start / chunk_size..=end / chunk_size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide_the_type() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest"), Sniff::Known(FileType::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1A\n\0\0"), Sniff::Known(FileType::Png));
        assert_eq!(sniff(b"GIF89a..."), Sniff::Known(FileType::Gif));
        assert_eq!(sniff(b"GIF87a"), Sniff::Known(FileType::Gif));
        assert_eq!(sniff(b"%PDF-1.7\n"), Sniff::Known(FileType::Pdf));
        for refused in [
            &b"MZ\x90\0"[..],
            b"<svg",
            b"GIF90a",
            b"\x89PNX",
            b"PK\x03\x04",
        ] {
            assert_eq!(sniff(refused), Sniff::Refused, "{refused:?}");
        }
        for partial in [&b""[..], b"\xFF", b"\x89PN", b"GIF8", b"%PD"] {
            assert_eq!(sniff(partial), Sniff::NeedMore, "{partial:?}");
        }
    }

    #[test]
    fn media_types_round_trip() {
        for t in FileType::ALL {
            assert_eq!(FileType::from_media_type(t.media_type()), Some(t));
        }
        assert_eq!(FileType::from_media_type("text/html"), None);
    }

    #[test]
    fn names_lose_paths_controls_and_dot_runs() {
        let cases = [
            ("../../etc/passwd", "passwd"),
            ("..\\..\\windows\\win.ini", "win.ini"),
            ("C:\\Users\\ada\\cat.png", "cat.png"),
            ("..", DEFAULT_NAME),
            ("...", DEFAULT_NAME),
            ("", DEFAULT_NAME),
            ("a/", DEFAULT_NAME),
            (".hidden.png", "hidden.png"),
            ("a..b...png", "a.b.png"),
            ("bell\u{7}\r\nname.png", "bellname.png"),
            ("evil\u{202E}gnp.exe", "evilgnp.exe"),
            ("wh<at>:\"|?*.pdf", "wh_at______.pdf"),
            ("  spaced name.gif  ", "spaced name.gif"),
            ("résumé €.pdf", "résumé €.pdf"),
        ];
        for (raw, want) in cases {
            assert_eq!(sanitize_name(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn long_names_are_cut_keeping_the_extension() {
        let long = format!("{}.png", "a".repeat(500));
        let name = sanitize_name(&long);
        assert_eq!(name.len(), MAX_NAME_BYTES);
        assert!(name.ends_with("a.png"));
        let wide = format!("{}.pdf", "é".repeat(300));
        let name = sanitize_name(&wide);
        assert!(
            name.len() <= MAX_NAME_BYTES && name.ends_with("é.pdf"),
            "{name}"
        );
    }

    #[test]
    fn stored_names_end_with_an_extension_of_the_stored_type() {
        assert_eq!(stored_name(Some("cat.png"), FileType::Png), "cat.png");
        assert_eq!(stored_name(Some("CAT.PNG"), FileType::Png), "CAT.PNG");
        assert_eq!(stored_name(Some("cat.pdf"), FileType::Png), "cat.pdf.png");
        assert_eq!(
            stored_name(Some("photo.JPEG"), FileType::Jpeg),
            "photo.JPEG"
        );
        assert_eq!(stored_name(Some("photo"), FileType::Jpeg), "photo.jpg");
        assert_eq!(stored_name(None, FileType::Pdf), "upload.pdf");
        assert_eq!(stored_name(Some("../x"), FileType::Gif), "x.gif");
        let long = stored_name(Some(&"b".repeat(400)), FileType::Gif);
        assert!(
            long.len() <= MAX_NAME_BYTES && long.ends_with("b.gif"),
            "{long}"
        );
    }

    #[test]
    fn raw_names_come_from_content_disposition_or_x_file_name() {
        assert_eq!(
            raw_file_name(Some("attachment; filename=\"a;b \\\"c\\\".png\""), None).as_deref(),
            Some("a;b \"c\".png")
        );
        assert_eq!(
            raw_file_name(
                Some(
                    "attachment; filename=\"fallback.png\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
                ),
                Some("ignored")
            )
            .as_deref(),
            Some("résumé.pdf")
        );
        assert_eq!(
            raw_file_name(Some("inline; FILENAME=plain.gif"), None).as_deref(),
            Some("plain.gif")
        );
        assert_eq!(
            raw_file_name(Some("attachment"), Some("x%20y+z.png")).as_deref(),
            Some("x y+z.png")
        );
        assert_eq!(raw_file_name(None, Some("  ")), None);
        assert_eq!(raw_file_name(None, None), None);
    }

    #[test]
    fn form_data_is_recognised() {
        assert!(is_form_data("multipart/form-data; boundary=x"));
        assert!(is_form_data("Multipart/Form-Data;boundary=x"));
        assert!(!is_form_data("multipart/mixed; boundary=x"));
        assert!(!is_form_data("image/png"));
    }

    #[test]
    fn downloads_name_the_file_safely() {
        assert_eq!(
            content_disposition("cat.png"),
            "attachment; filename=\"cat.png\"; filename*=UTF-8''cat.png"
        );
        assert_eq!(
            content_disposition("résumé \"1\".pdf"),
            "attachment; filename=\"r_sum_ _1_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.pdf"
        );
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        let tag = etag("abc");
        assert_eq!(tag, "\"abc\"");
        assert!(none_match(Some("\"abc\""), &tag));
        assert!(none_match(Some("W/\"abc\""), &tag));
        assert!(none_match(Some("\"x\", \"abc\""), &tag));
        assert!(none_match(Some("*"), &tag));
        assert!(!none_match(Some("\"abd\""), &tag));
        assert!(!none_match(Some("abc"), &tag));
        assert!(!none_match(None, &tag));
        assert!(if_range_holds(None, &tag));
        assert!(if_range_holds(Some("\"abc\""), &tag));
        assert!(!if_range_holds(Some("\"old\""), &tag));
        assert!(!if_range_holds(Some("Wed, 21 Oct 2015 07:28:00 GMT"), &tag));
    }

    #[test]
    fn single_byte_ranges_parse() {
        use RangeRequest::*;
        let p = |h: &str| parse_range(Some(h), 100);
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(p("bytes=0-9"), Partial { start: 0, end: 9 });
        assert_eq!(p("bytes=90-200"), Partial { start: 90, end: 99 });
        assert_eq!(p("bytes=95-"), Partial { start: 95, end: 99 });
        assert_eq!(p("bytes=-10"), Partial { start: 90, end: 99 });
        assert_eq!(p("bytes=-500"), Partial { start: 0, end: 99 });
        assert_eq!(p("Bytes = 3-3"), Partial { start: 3, end: 3 });
        assert_eq!(p("bytes=100-"), Unsatisfiable);
        assert_eq!(p("bytes=100-200"), Unsatisfiable);
        assert_eq!(p("bytes=-0"), Unsatisfiable);
        for ignored in [
            "bytes=5-1",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=",
            "bytes=-",
            "bytes=+1-2",
            "0-1",
        ] {
            assert_eq!(p(ignored), Full, "{ignored}");
        }
    }

    #[test]
    fn ranges_map_to_chunks() {
        assert_eq!(chunks_covering(0, 9, 10), 0..=0);
        assert_eq!(chunks_covering(9, 10, 10), 0..=1);
        assert_eq!(chunks_covering(25, 49, 10), 2..=4);
    }
}
