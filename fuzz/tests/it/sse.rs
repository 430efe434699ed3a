//! The SSE decoder on arbitrary bytes split at arbitrary points: it never panics, every event it
//! returns fits the configured maximum event size, and however the bytes are chunked it returns
//! the same events (and hits the size limit or not) as with the bytes in one chunk.

use agentcap_wire::{SseDecoder, SseEvent};

use crate::{Rng, fuzz};

/// The events of `chunks` fed in order, then `finish`; `None` when the decoder refused the input.
fn decode(chunks: &[&[u8]], max: usize) -> Option<Vec<SseEvent>> {
    let mut d = SseDecoder::with_max_event_size(max);
    let mut events = Vec::new();
    for c in chunks {
        events.extend(d.push(c).ok()?);
    }
    events.extend(d.finish().ok()?);
    Some(events)
}

fn size(ev: &SseEvent) -> usize {
    ev.data.len() + ev.event.as_ref().map_or(0, String::len) + ev.id.as_ref().map_or(0, String::len)
}

#[test]
fn sse_decoder() {
    let seeds: &[&[u8]] = &[
        b"event: message.output.delta\ndata: {\"content\":\"hi\"}\n\n",
        b"data: a\r\ndata: b\r\n\r\n: comment\n\nid: 7\nretry: 10\ndata: c\n\n",
        b"\xEF\xBB\xBFdata: bom\r\rdata: cr only\r\r",
        b"data: [DONE]\n\nevent: x\n\ndata\n\ndata:no space\nevent:\n\n",
        b": a long comment line that is longer than the small limit of the decoder\ndata: x\n\n",
        b"data: \xff\xfe invalid utf-8 \xc3\n\ndata: tail without blank line",
    ];
    fuzz("sse_decoder", seeds, |input: &[u8]| {
        // The limit and the split points come from the input, so a saved input replays exactly.
        let mut rng = Rng::new(input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        }));
        let max = [16, 64, 1 << 20][rng.below(3)];
        let whole = decode(&[input], max);
        if let Some(events) = &whole {
            for ev in events {
                assert!(
                    size(ev) <= max,
                    "event of {} bytes over the limit {max}",
                    size(ev)
                );
            }
            let raw: usize = events.iter().map(|e| e.raw_len).sum();
            assert!(raw <= input.len(), "raw lengths add up past the input");
        }
        for _ in 0..4 {
            let mut cuts: Vec<usize> = (0..rng.below(8))
                .map(|_| rng.below(input.len() + 1))
                .collect();
            if rng.one_in(4) {
                cuts = (0..=input.len()).collect(); // byte by byte
            }
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&input[at..c]);
                at = c;
            }
            chunks.push(&input[at..]);
            let split = decode(&chunks, max);
            assert_eq!(
                split,
                whole,
                "chunking changed the result (limit {max}, {} chunks)",
                chunks.len()
            );
        }
    });
}
