"""runtime/router/prompt.py: the exact Arch-Router prompt, conversation selection, chat template, parsing."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archc.compiler import router_prompt
from runtime.router import prompt as rp
from tests.support import tiny_models

WORKED_ROUTES = [("Image generation", "generating image")]
WORKED_CONVERSATION = [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "Hello! How can I assist you today?"},
    {"role": "user", "content": "given the image In style of Andy Warhol, portrait of Bart and Lisa Simpson"},
]


def test_template_is_byte_exact() -> None:
    raw = rp.ARCH_ROUTER_TEMPLATE.encode("utf-8")
    assert len(raw) == 856
    assert hashlib.sha256(raw).hexdigest() == "8004153a5e58066139d261d56392543ef29c63487ad4872aaba4d29929890dde"


def test_worked_example_renders_byte_identical() -> None:
    # archgw's own unit test (notes section 2), spelled out in full.
    expected = (
        "\nYou are a helpful assistant designed to find the best suited route.\n"
        "You are provided with route description within <routes></routes> XML tags:\n<routes>\n"
        '[{"name":"Image generation","description":"generating image"}]'
        "\n</routes>\n\n<conversation>\n"
        '[{"role":"user","content":"hi"},{"role":"assistant","content":"Hello! How can I assist you today?"},'
        '{"role":"user","content":"given the image In style of Andy Warhol, portrait of Bart and Lisa Simpson"}]'
        "\n</conversation>\n\nYour task is to decide which route is best suit with user intent on the conversation "
        "in <conversation></conversation> XML tags.  Follow the instruction:\n1. If the latest intent from user is "
        'irrelevant or user intent is full filled, response with other route {"route": "other"}.\n'
        "2. You must analyze the route descriptions and find the best match route for user latest intent.\n"
        "3. You only response the name of the route that best matches the user's request, use the exact name in "
        "the <routes></routes>.\n\nBased on your analysis, provide your response in the following JSON formats if "
        'you decide to match any route:\n{"route": "route_name"}\n'
    )
    # Fill the routes the way the compiler does (compact JSON, config order), independently of prompt.py.
    routes_json = json.dumps([{"name": n, "description": d} for n, d in WORKED_ROUTES], separators=(",", ":"),
                             ensure_ascii=False)
    filled = rp.ARCH_ROUTER_TEMPLATE.replace("{routes}", routes_json)
    assert filled == rp.fill_routes(WORKED_ROUTES)
    conversation = rp.select_conversation(WORKED_CONVERSATION)
    assert rp.render_user_prompt(filled, conversation).encode("utf-8") == expected.encode("utf-8")


def test_compiler_prompt_matches_runtime_template() -> None:
    # The compiler keeps its own copy (the runtime may not import it): both must be the same bytes.
    assert router_prompt.ARCH_ROUTER_TEMPLATE == rp.ARCH_ROUTER_TEMPLATE


def test_non_ascii_is_kept_and_braces_in_content_are_literal() -> None:
    filled = rp.fill_routes([("résumé", "écrire {conversation} du code")])
    text = rp.render_user_prompt(filled, [{"role": "user", "content": "héllo \"x\" {routes}"}])
    assert '"name":"résumé"' in text
    assert '{"role":"user","content":"héllo \\"x\\" {routes}"}' in text
    # routes are filled first: a description containing {conversation} is filled too (archgw's order)
    assert text.count('"content":"héllo') == 2


def test_selection_drops_system_tool_and_empty_turns() -> None:
    messages = [
        {"role": "system", "content": "be nice"},
        {"role": "developer", "content": "dev"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}},
                                     {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        {"role": "tool", "content": "result", "tool_call_id": "1"},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "next"},
    ]
    assert rp.select_conversation(messages) == [
        {"role": "user", "content": "a\nb"}, {"role": "assistant", "content": "done"}, {"role": "user", "content": "next"},
    ]


def test_overflowing_user_message_is_kept_whole_and_stops_the_walk() -> None:
    big = "x" * 8000  # 2000 estimated tokens: 214 + 2000 > 2048
    messages = [{"role": "user", "content": "old"}, {"role": "user", "content": big}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "new"}]
    assert rp.select_conversation(messages) == [
        {"role": "user", "content": big}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "new"}]


def test_overflowing_assistant_message_is_dropped_and_stops_the_walk() -> None:
    messages = [{"role": "user", "content": "old"}, {"role": "assistant", "content": "y" * 8000},
                {"role": "user", "content": "new"}]
    assert rp.select_conversation(messages) == [{"role": "user", "content": "new"}]


def test_budget_boundary_is_inclusive() -> None:
    # 214 + 1834 == 2048 fits exactly; one more byte-quad overflows.
    fits = [{"role": "assistant", "content": "a" * (1834 * 4)}, {"role": "user", "content": ""}]
    assert rp.select_conversation(fits) == [{"role": "assistant", "content": "a" * (1834 * 4)}]
    over = [{"role": "assistant", "content": "a" * (1835 * 4)}]
    assert rp.select_conversation(over) == [{"role": "assistant", "content": "a" * (1835 * 4)}]  # kept: nothing else


def test_a_huge_kept_message_is_clipped_to_head_and_tail() -> None:
    huge = "START " + "é" * 100_000 + " END?"
    (turn,) = rp.select_conversation([{"role": "user", "content": huge}])
    assert turn["content"].startswith("START ") and turn["content"].endswith(" END?")
    assert rp.CLIP_MARKER in turn["content"]
    assert len(turn["content"].encode("utf-8")) <= 2048 * 4 + len(rp.CLIP_MARKER)
    assert rp.select_conversation([{"role": "user", "content": "x" * 8192}])[0]["content"] == "x" * 8192


def test_tighter_budget_and_empty_input() -> None:
    messages = [{"role": "user", "content": "a" * 400}, {"role": "assistant", "content": "c" * 40},
                {"role": "user", "content": "b" * 40}]
    assert rp.select_conversation(messages, budget=400) == [{"role": "user", "content": "a" * 400},
                                                            {"role": "assistant", "content": "c" * 40},
                                                            {"role": "user", "content": "b" * 40}]
    assert rp.select_conversation(messages, budget=230) == [{"role": "user", "content": "b" * 40}]
    assert rp.select_conversation([]) == []
    assert rp.select_conversation([{"role": "system", "content": "s"}, "junk", {"content": "no role"}]) == []


@pytest.mark.parametrize(
    ("answer", "route", "fallback"),
    [
        ('{"route": "code_review"}', "code_review", None),
        ("{'route': 'code_review'}", "code_review", None),
        ('```json\n{"route": "code_review"}\n```', "code_review", None),
        ('{"route": "code_review"}\\n', "code_review", None),
        ('{"route": "other"}', None, "other"),
        ('{"route": ""}', None, "other"),
        ('{"route": null}', None, "other"),
        ('{"route": "poetry"}', None, "no_match"),
        ('{"name": "code_review"}', None, "malformed"),
        ('{"route": 3}', None, "malformed"),
        ('["code_review"]', None, "malformed"),
        ("I think code_review", None, "malformed"),
        ("", None, "malformed"),
    ],
)
def test_parse_answer(answer: str, route: str | None, fallback: str | None) -> None:
    assert rp.parse_answer(answer, ["code_review", "summarization"]) == rp.ParsedAnswer(route, fallback)


CHATS = [
    [{"role": "user", "content": "hello"}],
    [{"role": "system", "content": "You route."}, {"role": "user", "content": "hi"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "ü {x}"}],
]


@pytest.mark.parametrize("messages", CHATS, ids=["user", "system", "multi"])
def test_chat_template_matches_transformers(messages: list[dict], tiny_tokenizer) -> None:
    transformers = pytest.importorskip("transformers", reason="transformers is in the test extra")
    config = tiny_models.tokenizer_config()
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tiny_tokenizer, chat_template=config["chat_template"],
                                              eos_token="<|im_end|>", pad_token="<|endoftext|>")
    expected = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ours = rp.ChatTemplate.from_tokenizer_config(config).render(messages)
    assert ours == expected
    assert ours.endswith("<|im_start|>assistant\n")


def test_chat_template_raise_exception_and_tojson() -> None:
    tpl = rp.ChatTemplate("{% if messages|length > 1 %}{{ raise_exception('one only') }}{% endif %}"
                          "{{ messages[0] | tojson }}{{ eos_token }}", {"eos_token": "</s>"})
    assert tpl.render([{"role": "user", "content": "<é>"}]) == '{"role": "user", "content": "<é>"}</s>'
    with pytest.raises(rp.ChatTemplateError, match="one only"):
        tpl.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(rp.ChatTemplateError):
        rp.ChatTemplate.from_tokenizer_config({"eos_token": "x"})
    with pytest.raises(rp.ChatTemplateError):
        rp.ChatTemplate("{% if %}", {})


def test_split_prompt_keeps_the_route_table_static() -> None:
    chat = rp.ChatTemplate.from_tokenizer_config(tiny_models.tokenizer_config())
    filled = rp.fill_routes(tiny_models.TEST_ROUTES)
    split = rp.split_prompt(chat, filled)
    assert split.static.startswith("<|im_start|>system\nYou are Qwen")
    assert split.static.endswith("<conversation>\n")
    assert split.tail.endswith('<|im_start|>assistant\n{"route": "')
    conv = rp.compact_json([{"role": "user", "content": "hi"}])
    whole = chat.render([{"role": "user", "content": filled.replace("{conversation}", conv)}])
    assert split.text(conv) == whole + rp.ANSWER_PREFIX


_turns = st.lists(st.fixed_dictionaries({
    "role": st.sampled_from(["user", "assistant", "system", "tool"]),
    "content": st.text(max_size=3000),
}), max_size=12)


@settings(max_examples=150, deadline=None)
@given(messages=_turns, budget=st.integers(min_value=1, max_value=3000))
def test_selection_properties(messages: list[dict], budget: int) -> None:
    selected = rp.select_conversation(messages, budget)
    kept = [m for m in messages if m["role"] in ("user", "assistant") and m["content"]]
    if kept:
        assert selected, "the last message is always kept"
        assert selected[-1]["role"] == kept[-1]["role"]
    else:
        assert selected == []
    # A contiguous, chronological suffix of the kept turns (contents may be clipped).
    tail = kept[len(kept) - len(selected):]
    assert [t["role"] for t in selected] == [t["role"] for t in tail]
    for got, src in zip(selected, tail):
        assert got["content"] == src["content"] or rp.CLIP_MARKER in got["content"]
    # Within budget, except the newest turn or one user turn that overflowed it.
    estimate = rp.TEMPLATE_TOKEN_ESTIMATE + sum(len(t["content"].encode()) // 4 for t in tail)
    if estimate > budget and len(selected) > 1:
        assert tail[0]["role"] == "user"
        assert estimate - len(tail[0]["content"].encode()) // 4 <= budget
