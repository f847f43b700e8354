//! Unit tests of `params.rs` (kept apart so that it stays under 600 lines).
use super::*;

fn lim() -> Limits {
    Limits::default()
}

fn parse(q: &str) -> Result<ParsedQuery, ParamError> {
    let mut presets = Presets::new();
    let mut m = BTreeMap::new();
    m.insert("width".to_string(), "200".to_string());
    m.insert("height".to_string(), "200".to_string());
    m.insert("fit".to_string(), "cover".to_string());
    m.insert("q".to_string(), "70".to_string());
    presets.insert("thumb".to_string(), parse_preset(&m).unwrap());
    parse_query(Some(q), &lim(), &presets)
}

fn spec(q: &str) -> TransformSpec {
    parse(q).unwrap().transform.unwrap()
}

fn err(q: &str) -> String {
    parse(q).unwrap_err().to_string()
}

#[test]
fn forwarded_query_parses_back_to_the_same_canonical() {
    for q in [
        "w=400",
        "width=300&height=200&fit=cover&gravity=top-left&q=70",
        "preset=thumb&dpr=2",
        "width=100&fit=pad&background=ff0000&format=png&quality=50",
        "format=webp",
        "fit=scale-down",
        "w=10&format=auto",
    ] {
        let s = spec(q);
        for chosen in [None, Some(OutputFormat::Webp)] {
            let back = spec(&s.to_query(chosen));
            assert_eq!(back.canonical(chosen), s.canonical(chosen), "{q}");
        }
    }
}

#[test]
fn no_transform_params() {
    let p = parse("a=1&b=%20x").unwrap();
    assert_eq!(p.transform, None);
    assert_eq!(p.forward_query.as_deref(), Some("a=1&b=%20x"));
    let p = parse_query(None, &lim(), &Presets::new()).unwrap();
    assert_eq!(
        p,
        ParsedQuery {
            transform: None,
            forward_query: None,
            signature: None,
        }
    );
    assert_eq!(parse("").unwrap().transform, None);
}

#[test]
fn signature_is_taken_out_and_covers_the_canonical_request() {
    let p = parse("w=400&sig=abc_-1&x=1").unwrap();
    assert_eq!(p.signature.as_deref(), Some("abc_-1"));
    assert_eq!(p.forward_query.as_deref(), Some("x=1"));
    let a = spec("width=400&q=70&fit=cover").signed_form();
    assert_eq!(a, spec("fit=cover&q=70&w=400").signed_form());
    assert_ne!(a, spec("fit=cover&q=71&w=400").signed_form());
    assert_eq!(spec("w=10&format=auto").signed_form(), "w=10,f=auto");
    assert_eq!(spec("format=auto").signed_form(), "f=auto");
}

#[test]
fn aliases_and_forwarding() {
    let p = parse("x=1&w=400&y=2&h=300&q=50").unwrap();
    assert_eq!(p.forward_query.as_deref(), Some("x=1&y=2"));
    let s = p.transform.unwrap();
    assert_eq!(
        (s.width, s.height, s.quality),
        (Some(400), Some(300), Some(50))
    );
    assert_eq!(
        spec("format=jpg").format,
        FormatChoice::Fixed(OutputFormat::Jpeg)
    );
    assert_eq!(spec("gravity=auto").gravity, Gravity::Auto);
    assert_eq!(parse("w=400").unwrap().forward_query, None);
    // Nuxt Image's Cloudflare provider writes `f=` and `g=`.
    assert_eq!(
        spec("f=webp&g=top").signed_form(),
        spec("format=webp&gravity=top").signed_form()
    );
}

#[test]
fn duplicates_last_wins() {
    assert_eq!(spec("w=100&width=200").width, Some(200));
    assert_eq!(spec("width=200&w=100").width, Some(100));
}

#[test]
fn presets() {
    let s = spec("preset=thumb");
    assert_eq!(
        (s.width, s.height, s.fit, s.quality),
        (Some(200), Some(200), Fit::Cover, Some(70))
    );
    // explicit params override, wherever preset= is
    let s = spec("w=300&preset=thumb");
    assert_eq!((s.width, s.height), (Some(300), Some(200)));
    assert_eq!(err("preset=thumbx"), r#"preset: no preset named "thumbx""#);
    let mut m = BTreeMap::new();
    m.insert("fit".to_string(), "squash".to_string());
    assert!(parse_preset(&m)
        .unwrap_err()
        .to_string()
        .starts_with("fit: \"squash\""));
    let mut m = BTreeMap::new();
    m.insert("colour".to_string(), "red".to_string());
    assert_eq!(
        parse_preset(&m).unwrap_err().to_string(),
        "colour: is not a transform parameter"
    );
    let mut m = BTreeMap::new();
    m.insert("width".to_string(), "9000".to_string());
    assert!(parse_preset(&m).unwrap().validate(&lim()).is_err());
}

#[test]
fn errors() {
    assert_eq!(err("width=-3"), r#"width: "-3" is not a positive integer"#);
    assert_eq!(err("w=0"), r#"w: "0" is not a positive integer"#);
    assert_eq!(err("w="), r#"w: "" is not a positive integer"#);
    assert_eq!(err("w=1.5"), r#"w: "1.5" is not a positive integer"#);
    assert_eq!(err("w=99999999999"), r#"w: "99999999999" is too large"#);
    assert_eq!(
        err("format=tiff"),
        r#"format: "tiff" is not one of auto, avif, webp, jpeg, baseline-jpeg, png, json"#
    );
    assert_eq!(err("width=5000"), "width: 5000 is above the maximum 4096");
    assert_eq!(
        err("width=3000&dpr=2"),
        "width: 3000 at dpr 2 is 6000, above the maximum 4096"
    );
    assert!(err("dpr=5").starts_with("dpr: \"5\""));
    assert!(err("dpr=NaN").starts_with("dpr:"));
    assert!(err("q=0").starts_with("q: \"0\""));
    assert!(err("quality=101").starts_with("quality:"));
    assert!(err("fit=stretch").starts_with("fit:"));
    assert!(err("gravity=north").starts_with("gravity:"));
    assert!(err("background=%23ggg").starts_with("background: \"#ggg\""));
    assert!(
        err("w=%0A").contains("\\n"),
        "control characters are escaped"
    );
    let e = err("w=4000&h=4000&dpr=1.5");
    assert!(e.starts_with("width:"), "{e}");
    for q in ["w=-3", "format=tiff", "w=%0A%0Ax"] {
        assert!(!err(q).contains('\n'));
    }
    let mut l = lim();
    l.max_output_pixels = 1000;
    assert!(parse_query(Some("w=100&h=100"), &l, &Presets::new()).is_err());
    l.allowed_formats = vec![OutputFormat::Jpeg];
    assert!(parse_query(Some("format=avif"), &l, &Presets::new())
        .unwrap_err()
        .to_string()
        .starts_with("format:"));
}

/// Found by the transform_url fuzz target: `&?dpr=2.5` was forwarded to the origin as a
/// non-transform parameter, but the next hop parsed the forwarded `?dpr=2.5` as `dpr`.
#[test]
fn a_question_mark_is_part_of_the_name() {
    let p = parse("w=100&?dpr=2.5").unwrap();
    assert_eq!(p.transform.as_ref().unwrap().dpr, 1.0);
    assert_eq!(p.forward_query.as_deref(), Some("?dpr=2.5"));
    let again = parse(p.forward_query.as_deref().unwrap()).unwrap();
    assert_eq!(again.transform, None);
    assert!(parse("?w=100").unwrap().transform.is_none());
}

#[test]
fn metadata_values_key_and_forwarding() {
    use crate::image::metadata::Metadata;
    assert_eq!(spec("w=10").metadata, Metadata::Copyright);
    assert_eq!(spec("w=10&metadata=keep").metadata, Metadata::Keep);
    assert_eq!(spec("metadata=none").metadata, Metadata::None);
    // the default is not in the key (older keys and signatures unchanged); the others are
    assert_eq!(spec("w=10&metadata=copyright").canonical(None), "w=10");
    assert_eq!(spec("w=10&metadata=keep").canonical(None), "w=10,meta=keep");
    assert_eq!(spec("w=10&metadata=none").signed_form(), "w=10,meta=none");
    assert_eq!(
        spec("w=10&metadata=keep&format=json").canonical(None),
        "w=10,f=json"
    );
    for q in ["metadata=keep", "w=5&metadata=none", "metadata=copyright"] {
        let s = spec(q);
        assert_eq!(spec(&s.to_query(None)).canonical(None), s.canonical(None));
    }
    let e = err("metadata=all");
    assert!(
        e.contains("metadata") && e.contains("copyright, keep, none"),
        "{e}"
    );
    // a preset's value, overridden by the URL's
    let mut m = BTreeMap::new();
    m.insert("metadata".to_string(), "keep".to_string());
    let mut presets = Presets::new();
    presets.insert("k".to_string(), parse_preset(&m).unwrap());
    let s = |q: &str| {
        parse_query(Some(q), &lim(), &presets)
            .unwrap()
            .transform
            .unwrap()
            .metadata
    };
    assert_eq!(s("preset=k"), Metadata::Keep);
    assert_eq!(s("preset=k&metadata=none"), Metadata::None);
}
