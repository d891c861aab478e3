use super::*;

#[test]
fn path_segments_are_encoded() {
    assert_eq!(path_segment("demo-1"), "demo-1");
    assert_eq!(path_segment("a/b?c#d e%"), "a%2Fb%3Fc%23d%20e%25");
    assert_eq!(path_segment("<x>\"'"), "%3Cx%3E%22'");
}

#[test]
fn the_csp_allows_no_inline_script_and_no_framing() {
    assert!(CSP.contains("script-src 'self'"));
    assert!(!CSP.contains("unsafe-inline") && !CSP.contains("unsafe-eval"));
    assert!(CSP.contains("frame-ancestors 'none'"));
}
