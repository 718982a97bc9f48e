//! MiniLM sentence embeddings on candle.

use agora_inference::backends::candle::{BertEmbedder, Embedder, cosine};

use crate::common::*;

const GOLDEN_SENTENCE: &str = "The quick brown fox jumps over the lazy dog.";

#[test]
fn golden_vector_matches_within_1e_4() {
    let e = BertEmbedder::load(&model(MINILM)).unwrap();
    assert_eq!(e.dim(), 384);
    let v = &e.embed(&[GOLDEN_SENTENCE]).unwrap()[0];
    let path = format!(
        "{}/tests/data/minilm_golden.json",
        crate::common::manifest_dir()
    );
    let golden: Vec<f32> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(golden.len(), 384);
    let worst = v
        .iter()
        .zip(&golden)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-4, "max |diff| {worst}; ours {:?}", &v[..8]);
}

#[test]
fn paraphrases_are_closer_than_unrelated_sentences() {
    let e = BertEmbedder::load(&model(MINILM)).unwrap();
    let v = e
        .embed(&[
            "A man is playing a guitar.",
            "Someone is strumming a guitar.",
            "The central bank raised interest rates.",
            "How do I bake sourdough bread?",
        ])
        .unwrap();
    let para = cosine(&v[0], &v[1]);
    for other in &v[2..] {
        assert!(
            para > cosine(&v[0], other) + 0.2,
            "{para} vs {}",
            cosine(&v[0], other)
        );
    }
    // Batched and single embeddings agree.
    let single = &e.embed(&["Someone is strumming a guitar."]).unwrap()[0];
    assert!(cosine(single, &v[1]) > 0.99999);
}
