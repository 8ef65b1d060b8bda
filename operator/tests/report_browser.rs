//! The HTML report in a real browser: headless Chromium (a Debian package installed by
//! `scripts/test-peers`) opens the page from a file, with no network, runs its script and
//! paints it. One run dumps the DOM after the script ran (the inventory is there and the sort
//! from the address was applied); one run takes a screenshot (the diagram is painted).

mod support;

use support::{EXAMPLE_INTEGRATIONS as INTEGRATIONS, run_chromium, switchboard, text};

/// Fill of the diagram's system boxes (`svg::SYSTEM_FILL`, #dbeafe).
const SYSTEM_FILL: [u8; 3] = [0xdb, 0xea, 0xfe];

#[test]
fn chromium_shows_the_diagram_and_the_sorted_inventory_offline() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let output = switchboard(&[
        "report",
        "-f",
        "examples/",
        "-o",
        "html",
        "--now",
        "2026-11-28T09:00:00Z",
        "--output-file",
        page.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output).1);

    // The DOM after the script ran, opened at an address that asks for the inventory sorted
    // by its second column (Integration), descending.
    let address = format!("file://{}#sort=inventory:1:desc", page.display());
    let dom_run = run_chromium(
        &dir.path().join("profile-dom"),
        &["--virtual-time-budget=5000", "--dump-dom", &address],
    );
    let dom = String::from_utf8_lossy(&dom_run.stdout).into_owned();
    assert!(
        dom.contains("<svg class=\"diagram\""),
        "no diagram in the DOM; chromium said: {}",
        String::from_utf8_lossy(&dom_run.stderr)
    );
    assert_eq!(dom.matches("<g class=\"node integration\"").count(), INTEGRATIONS.len());
    for name in INTEGRATIONS {
        assert!(dom.contains(&format!(">{name}</text>")), "{name} is not in the diagram");
    }
    let inventory_start =
        dom.find("<table class=\"sortable\" id=\"inventory\"").expect("inventory");
    let inventory = &dom[inventory_start..];
    let inventory = &inventory[..inventory.find("</table>").unwrap()];
    assert!(
        inventory.contains("aria-sort=\"descending\"><button type=\"button\">Integration</button>"),
        "the script did not sort by the address: {inventory}"
    );
    let positions: Vec<usize> = INTEGRATIONS
        .iter()
        .map(|name| {
            inventory.find(&format!("<td>{name}</td>")).expect("every integration has a row")
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] > w[1]),
        "rows are not in descending name order: {positions:?}"
    );

    // The painted page: the system boxes of the diagram are on screen.
    let screenshot = dir.path().join("report.png");
    let shot_run = run_chromium(
        &dir.path().join("profile-shot"),
        &[
            "--window-size=1400,900",
            &format!("--screenshot={}", screenshot.display()),
            &format!("file://{}", page.display()),
        ],
    );
    assert!(
        screenshot.exists(),
        "no screenshot; chromium said: {}",
        String::from_utf8_lossy(&shot_run.stderr)
    );
    let decoder =
        png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&screenshot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let channels = frame.color_type.samples();
    let filled =
        pixels[..frame.buffer_size()].chunks(channels).filter(|p| p[..3] == SYSTEM_FILL).count();
    // Eleven system boxes of at least 120x44 pixels each, minus their text.
    assert!(filled > 11 * 3000, "the diagram's system boxes are not painted ({filled} pixels)");
}
