"""The CommonsenseQA task (5-way multiple choice) and its answer extractors.

Prompt (the default, ``answer_format=text``: the choices listed without letters, the answer names the text)::

    Q: Where would you put a letter so that the mail carrier takes it away?
    Answer Choices:
    - drawer
    - mailbox
    ...
    A: The letter has to be left where the mail carrier collects mail. ... The answer is mailbox.

Answer format (task option ``answer_format``):

* ``choice``: the choices lettered "(a) drawer", the answer written "(b) mailbox" (the gold answer is that string;
  extractor ``commonsense_qa_choice``) and graded by the choice TEXT named: "(c) mailbox" counts as mailbox, a
  letter alone ("(b)") is graded as a letter, a text that is no choice is wrong;
* ``letter``: the answer is written "(b)" and graded by the letter (extractor ``commonsense_qa``; the gold answer is
  the letter);
* ``text`` (the default): no letters at all. The choices are listed one per line after "- " and the answer is
  written "The answer is mailbox."; read by the same extractor as ``choice`` and graded by the same text match (a letter
  alone is wrong: the prompt shows none). The gold answer stays "(b) mailbox" (its letter, the choice's position
  in the original order, is bookkeeping only: shuffles, permuted training copies and ``answer_label``)::

      Q: Where would you put a letter so that the mail carrier takes it away?
      Answer Choices:
      - drawer
      - mailbox
      ...
      A: The letter has to be left where the mail carrier collects mail. ... The answer is mailbox.

Why (docs/results/commonsense_qa_bias.md; SmolLM2-135M, greedy, the first 200 dev questions of the seeded shuffle):
with ``letter`` the model answers "(c)" to 178/200 (19.5%, chance 20%). The "(c)" is what it writes, not an
extractor error, and it is position bias, not the exemplars: with every choice list shuffled per question it still
writes "(c)" 175/200 (13.0%); exemplars re-lettered so that all their answers are (a) give (c) 191/200; reversed
exemplars (c) 184/200. Its rationales and the text it names carry the signal the letter loses: asked to write
"(b) mailbox", the letter is (c) 145/200 but the text it writes is the right choice 29.0% of the time (letter
18.0%). So the default grades the text. On all 1221 dev questions the gain is smaller: 21.9% (``letter``: 20.5%; the
same completions read by their letter 18.8%), but the most frequent answer falls from 86% of the questions to 37%.
Fine-tuning brings the bias back (the text then follows the letter): see the results file. Without letters
(``text``) it does not: STaR gains (all 1221 dev questions, 2 seeds, M(2) 27.4% and 27.8% prompted few-shot, vs
21.1% with ``choice``), hence the default (docs/results/commonsense_qa_text_format.md).

Choice order (task option ``choice_order``): ``original`` (default) or ``shuffle``: each question's choices in a
seeded order of their own (``choice_seed``, default 0; keyed on the question's id), relettered a-e, the gold answer
following its text. Measured with the letter format it does not lift accuracy (13.0%; the model still writes (c)).

Training copies (task option ``train_permutations=K``, default 0: off): every kept pair is trained K more times,
each copy the same question with its choices in another seeded order (``choice_seed`` and the question's id; the
gold choice under a different letter in each copy, so K=4 puts it under every letter once), the gold answer
following its text and the rationale's "(x)" / "(x) text" references re-lettered; a rationale that writes a letter
any other way ("choice b", "b)") or beside another choice's text is trained unpermuted only. Fine-tuning then sees
no letter prior in what it is taught. Through the optional Task hook ``augment``
(:class:`star_kit.protocols.Task`); measured in docs/results/commonsense_qa_permutations.md.

The answer label (:meth:`CommonsenseQATask.answer_label`: the letter of the choice an answer names) lets star-kit
record the answer-letter distribution of every iteration (``eval_labels``, ``train_labels``).

Rationalization hint (task option ``hint_style``; the exemplars show it too):

* ``both`` (default): the paper's " (CORRECT)" after the right choice, plus a hint sentence after the question
  (``answer_format=choice``; with ``text`` the same without letters: "- mailbox (CORRECT)", "(Hint: the answer is
  mailbox.)")::

      (b) mailbox (CORRECT)
      (c) bookshelf ... (Hint: the answer is (b) mailbox.)

* ``correct``: the STaR paper's marker alone; ``answer``: the hint sentence alone.

Measured with SmolLM2-135M on 60 training questions (greedy): the marker alone led it to the gold choice 14/60
times (no hint: 13/60; it answers "(c)" to almost everything), the sentence alone 35/60, both 30/60. A model this
small ignores the marker, so the default adds the sentence: rationalization rescues failures instead of none.

Data: ``ROOT/commonsenseqa/{train,dev}_rand_split.jsonl`` (CommonsenseQA v1.11 layout: ``answerKey``,
``question.stem``, ``question.choices[{label, text}]``) or the hub's ``tau/commonsense_qa`` (train/validation).
"""

from __future__ import annotations

import dataclasses
import random
import re
from typing import Any

import star_kit
from star_kit import arith
from star_kit.data import HubSource, Row
from star_kit.errors import DataError, StarKitError
from star_kit.records import Example
from star_kit.task import DatasetTask
from star_kit_tasks import TASKS_DIR

HINT_MARK = "(CORRECT)"
HINT_STYLES = ("both", "correct", "answer")
CHOICE_ORDERS = ("original", "shuffle")
ANSWER_FORMATS = ("choice", "letter", "text")
NAMED_FORMATS = ("choice", "text")  # graded by the choice text named
MAX_TRAIN_PERMUTATIONS = 24  # copies per kept pair; five choices have 119 other orders, 24 is plenty
LOCAL_FILES = {"train": "commonsenseqa/train_rand_split.jsonl", "eval": "commonsenseqa/dev_rand_split.jsonl"}
HUB_SPLITS = {"train": "train", "eval": "validation"}
SPLIT_ALIASES = {"dev": "eval", "validation": "eval"}
HUB_PATH = "tau/commonsense_qa"


def format_choices(stem: str, choices: list[tuple[str, str]]) -> str:
    """'stem\\nAnswer Choices:\\n(a) text\\n(b) text ...' (labels lowercased)."""
    lines = [stem, "Answer Choices:"]
    lines += [f"({label.lower()}) {text}" for label, text in choices]
    return "\n".join(lines)


def letter_of(answer: str) -> str:
    """The choice letter of an answer: 'b' of 'b', '(b)' and '(b) mailbox'."""
    m = re.match(r"\s*\(\s*([a-z])\s*\)|\s*([a-z])\s*$", answer, re.IGNORECASE)
    return next(g for g in m.groups() if g).lower() if m else answer.strip().strip("()").lower()


def parse_choice(answer: str | None) -> tuple[str | None, str]:
    """'(b) mailbox' -> ('b', 'mailbox'); '(b)' -> ('b', ''); 'mailbox' -> (None, 'mailbox'); text normalised
    (:func:`normalize_text`)."""
    if not isinstance(answer, str):
        return None, ""
    m = re.match(r"\s*\(\s*([a-z])\s*\)\s*(.*)", answer, re.IGNORECASE | re.DOTALL)
    return (m.group(1).lower(), normalize_text(m.group(2))) if m else (None, normalize_text(answer))


def normalize_text(text: str) -> str:
    """Choice text as compared: lowercase, single spaces, no quotes or punctuation at either end."""
    return " ".join(text.lower().split()).strip(" \"'`.,;:!?“”‘’")


_CHOICE_LINE = re.compile(r"\(([a-z])\) ")


def unletter_choices(question: str) -> str:
    """The question as ``answer_format=text`` shows it: every choice line after "Answer Choices:" written
    "- mailbox" instead of "(b) mailbox" (anything after the text, a hint, is kept)."""
    lines = question.split("\n")
    start = lines.index("Answer Choices:") + 1 if "Answer Choices:" in lines else len(lines)
    for i in range(start, len(lines)):
        if _CHOICE_LINE.match(lines[i]):
            lines[i] = "- " + lines[i][4:]
    return "\n".join(lines)


def mark_correct(question: str, letter: str) -> str:
    """The question with ' (CORRECT)' after the choice line of ``letter`` (unchanged when there is none)."""
    prefix = f"({letter_of(letter)}) "
    lines = question.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(prefix) and not line.endswith(HINT_MARK):
            lines[i] = f"{line} {HINT_MARK}"
            return "\n".join(lines)
    return question


def choice_line(question: str, letter: str) -> str | None:
    """'(b) mailbox': the line of choice ``letter`` ('b', '(b)' or '(b) mailbox') in ``question``, or None."""
    prefix = f"({letter_of(letter)}) "
    return next((line for line in question.split("\n") if line.startswith(prefix)), None)


def reorder_choices(example: Example, order: list[int]) -> Example:
    """``example`` with its choices in ``order`` (``order[i]``: the index of the choice shown at position i, a
    permutation of the positions), relettered a, b, c ...; the gold answer follows its choice text ("b" stays a
    letter, "(b) mailbox" keeps the written form with the new letter). Other fields are kept."""
    choices = [(str(label), str(text)) for label, text in example.fields.get("choices") or ()]
    if sorted(order) != list(range(len(choices))):
        raise ValueError(f"{order} is not a permutation of {len(choices)} choice positions")
    labels = [label for label, _ in choices]
    new = [(chr(ord("a") + i), choices[k][1]) for i, k in enumerate(order)]
    gold = order.index(labels.index(letter_of(example.answer)))
    letter, text = new[gold]
    written = example.answer.strip()
    answer = letter if not written.startswith("(") else f"({letter}) {text}" if parse_choice(written)[1] else \
        f"({letter})"
    stem = example.fields.get("stem", example.question.split("\nAnswer Choices:")[0])
    fields = {**example.fields, "choices": [list(c) for c in new]}
    return Example(id=example.id, question=format_choices(stem, new), answer=answer, fields=fields)


def shuffle_choices(example: Example, seed: int | str = 0) -> Example:
    """``example`` with its choices in a seeded random order (the same for the same id and seed) and relettered
    a, b, c ...; the gold letter follows its choice text. Other fields are kept."""
    choices = [(str(label), str(text)) for label, text in example.fields.get("choices") or ()]
    labels = [label for label, _ in choices]
    if len(choices) < 2 or example.answer not in labels:
        return example
    order = list(range(len(choices)))
    random.Random(f"commonsense_qa:choices:{seed}:{example.id}").shuffle(order)
    return reorder_choices(example, order)


def permutation_orders(n: int, gold: int, k: int, key: str) -> list[list[int]]:
    """``k`` seeded choice orders of ``n`` choices (``order[i]``: the old index shown at position i), none the
    identity, no two alike; the gold choice (old index ``gold``) is moved to every other position in turn (a
    seeded order of them), so with ``k = n - 1`` the original and its copies put the gold under every letter
    once. Fewer than ``k`` when there are not that many distinct orders (two choices: one). Deterministic in
    ``key``."""
    rng = random.Random(key)
    targets = [p for p in range(n) if p != gold]
    rng.shuffle(targets)
    seen, orders = {tuple(range(n))}, []
    for j in range(k):
        if not targets:
            break
        target = targets[j % len(targets)]
        for _ in range(50):  # (n-1)! orders put the gold at ``target``: 24 for five choices
            others = [i for i in range(n) if i != gold]
            rng.shuffle(others)
            order = others[:target] + [gold] + others[target:]
            if tuple(order) not in seen:
                seen.add(tuple(order))
                orders.append(order)
                break
    return orders


# A choice letter in parentheses (any case, spaces inside), and the letter forms a rationale may use that
# :func:`remap_letters` cannot re-letter safely: "b)", "[b]", "choice b", "option B", "answer is b", fullwidth.
# Possessive quantifiers: the same matches in linear time (r"\s*[:\-]?\s*" was quadratic in a run of spaces after
# "answer" or "choice").
_REF = re.compile(r"\(\s*+([A-Za-z])\s*+\)")
_UNSAFE_REF = re.compile(
    r"(?<![\w(])[A-Ea-e]\)|\[\s*+[A-Ea-e]\s*+\]"
    r"|\b(?:choice|option|letter|answer(?:\s++is)?)s?\s*+[:\-]?\s*+[A-Ea-e]\b"
    r"|[\uff08\uff09\uff21-\uff25\uff41-\uff45]",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s*+")


def remap_letters(rationale: str, mapping: dict[str, str], choices: list[tuple[str, str]]) -> str | None:
    """``rationale`` with every choice reference "(x)" / "(x) text" re-lettered by ``mapping`` (old letter ->
    new letter, lowercase; an upper-case "(B)" stays upper-case), or None when a reference cannot be re-lettered
    safely: a letter outside ``mapping``, a letter followed by the text of another choice ("(c) mailbox" where
    mailbox is (b): which one did it mean?), or a letter written any other way ("choice b", "b)", "[b]"). A
    rationale without letters comes back unchanged."""
    if _UNSAFE_REF.search(rationale):
        return None
    texts = sorted(((normalize_text(text), label.lower()) for label, text in choices), key=lambda t: -len(t[0]))
    reach = (len(texts[0][0]) if texts else 0) + 64  # what follows a letter that can name a choice (linear time)
    pieces, last = [], 0
    for m in _REF.finditer(rationale):
        letter = m.group(1)
        new = mapping.get(letter.lower())
        if new is None:
            return None
        start = _SPACES.match(rationale, m.end()).end()
        after = rationale[start : start + reach].lower()
        named = next((label for text, label in texts
                      if text and after.startswith(text) and not after[len(text):len(text) + 1].isalnum()), None)
        if named is not None and named != letter.lower():
            return None
        pieces += [rationale[last:m.start()], f"({new.upper() if letter.isupper() else new})"]
        last = m.end()
    return "".join(pieces) + rationale[last:]


# -- extractor -------------------------------------------------------------------------------------------------
_PHRASE = re.compile(r"answer\s+(?:is|would\s+be)\b|answer\s*:", re.IGNORECASE)
# Right after the phrase: "(b)", "b", "B)", "[b]", "choice b", "option (B)". A bare letter must stand alone
# (end, punctuation or end of line follows), so "the answer is a bank" is not read as choice (a). Possessive
# quantifiers give the same matches as the plain ones in linear time (r"\s*[:\-]?\s*" was quadratic in a run of
# spaces after "answer:").
_LETTER = re.compile(
    r"\s*+[:\-]?\s*+(?:(?:choice|option|letter)\s++)?"
    r"(?:\(\s*+([a-e])\s*+\)|\[\s*+([a-e])\s*+\]|([a-e])\s*+\)|([a-e])(?=[^\S\n]*+(?:[.,;:!?]|\n|$)))",
    re.IGNORECASE,
)
_PAREN_LETTER = re.compile(r"\(\s*([a-e])\s*\)", re.IGNORECASE)


_SENTENCE_END = re.compile(r"\n|\.(?:\s|$)")
# Where a named choice ends inside its sentence: a closing double quote before more words ('"old man" because ...'),
# a comma, semicolon or bracket, a spaced dash, or a reason ("because", "since"). Real choices almost never hold
# these (6 of the 54,810 choice texts of CommonsenseQA's train and dev files, all distractors: "take a nap because
# you're broke", "say "hello" to one another"); a model naming one of those is counted as naming no choice.
_LEADING = " \t\"'`.,;:!?“”‘’-–—"  # skipped before a named choice (what normalize_text strips, and dashes)
_CLAUSE_END = re.compile(r"[\"”](?=\s*\S)|[,;(\[]|\s[-–—]\s|\s(?:because|since)\b", re.IGNORECASE)


def _after_answer_phrase(text: Any) -> str | None:
    """What follows the last answer phrase ("answer is", "answer would be", "answer:") in ``text``, fullwidth
    forms read as ASCII; None when ``text`` is no string or has no such phrase. Linear time."""
    if not isinstance(text, str):
        return None
    text = arith.normalize_digits(text)
    phrase = arith.last_match(_PHRASE, text)
    return None if phrase is None else text[phrase.end():]


def _first_sentence(text: str) -> str:
    """``text`` up to its first newline or sentence-ending period."""
    return _SENTENCE_END.split(text, maxsplit=1)[0]


def extract_choice(text: str) -> str | None:
    """The letter (a-e, lowercase) chosen after the last answer phrase, or None.

    Letters are read reliably ("(b)", "b", "B)", "The answer is (b) mailbox"); choice text is read only when the
    letter follows it in parentheses in the same sentence ("The answer is mailbox (b)."). Fullwidth forms count
    as ASCII ("（ｂ）" -> "(b)"). Never raises; linear time in the text.
    """
    rest = _after_answer_phrase(text)
    if rest is None:
        return None
    m = _LETTER.match(rest)
    if m:
        return next(g for g in m.groups() if g).lower()
    sentence = _first_sentence(rest)
    m = _PAREN_LETTER.search(sentence)
    return m.group(1).lower() if m else None


def extract_named_choice(text: str) -> str | None:
    """The choice named after the last answer phrase, as '(b) mailbox' (letter and text), '(b)' (a letter alone)
    or 'mailbox' (text alone; 'mailbox (b)' reads as '(b) mailbox'); text normalised (:func:`normalize_text`) and
    cut where the choice's clause ends ('"walked" because the dog was tired' -> 'walked', 'mailbox, since' ->
    'mailbox'), at most 200 characters of the sentence read; None when nothing follows the phrase. The extractor of
    ``answer_format=choice``: the task grades the text when there is one, else the letter. Never raises; linear."""
    rest = _after_answer_phrase(text)
    if rest is None:
        return None
    sentence = _first_sentence(rest[:200])
    letter = None
    m = _LETTER.match(sentence)
    if m:
        letter, sentence = next(g for g in m.groups() if g).lower(), sentence[m.end():]
    else:
        m = _PAREN_LETTER.search(sentence)
        if m:
            letter, sentence = m.group(1).lower(), sentence[: m.start()] + sentence[m.end():]
    # what precedes the choice ('The answer is: "mailbox"', '(b), mailbox') is not its clause's end
    opening = len(sentence) - len(sentence.lstrip(_LEADING))
    end = _CLAUSE_END.search(sentence, opening)
    words = normalize_text(sentence[opening: end.start() if end else None])
    if letter is None:
        return words or None
    return f"({letter}) {words}" if words else f"({letter})"


# -- data ------------------------------------------------------------------------------------------------------
def adapt_hub_record(rec: dict[str, Any]) -> dict[str, Any]:
    """tau/commonsense_qa layout -> the v1.11 JSONL layout (one parser for both)."""
    choices = rec["choices"]
    return {
        "id": rec.get("id"),
        "answerKey": rec.get("answerKey"),
        "question": {
            "stem": rec["question"],
            "question_concept": rec.get("question_concept"),
            "choices": [{"label": lab, "text": txt} for lab, txt in zip(choices["label"], choices["text"])],
        },
    }


def parse_row(row: Row, split: str) -> Example:
    """One CommonsenseQA record -> Example (errors name file:line); a record in the hub's layout (a local file that
    ``datasets``' ``to_json`` wrote from tau/commonsense_qa) is read as that layout."""
    if isinstance(row.data.get("question"), str) and isinstance(row.data.get("choices"), dict):
        try:
            row = dataclasses.replace(row, data=adapt_hub_record(row.data))
        except (KeyError, TypeError) as exc:
            raise DataError(f"{row.where}: a record in the hub's layout (question, choices.label/text, answerKey) "
                            f"without {exc}") from None
    stem = row.text("question.stem")
    raw_choices = row.field("question.choices")
    if not isinstance(raw_choices, list) or len(raw_choices) < 2:
        raise DataError(f"{row.where}: 'question.choices' should be a list of at least 2 {{label, text}} objects")
    choices: list[tuple[str, str]] = []
    for k, choice in enumerate(raw_choices):
        if not isinstance(choice, dict) or "label" not in choice or "text" not in choice:
            raise DataError(f"{row.where}: choice {k + 1} should be an object with 'label' and 'text'")
        label, text = str(choice["label"]).strip(), str(choice["text"]).strip()
        if not re.fullmatch(r"[A-Za-z]", label):
            raise DataError(f"{row.where}: choice {k + 1} has label {label!r}; expected a single letter")
        if not text:
            raise DataError(f"{row.where}: choice {label} has empty text")
        choices.append((label.upper(), text))
    labels = [label for label, _ in choices]
    if len(set(labels)) != len(labels):
        raise DataError(f"{row.where}: duplicate choice labels {labels}")
    key = row.field("answerKey")
    key = key.strip().upper() if isinstance(key, str) else key
    if key not in labels:
        raise DataError(f"{row.where}: answerKey {key!r} is not among the choices {labels}")
    ident = row.data.get("id")
    ident = str(ident) if isinstance(ident, (str, int)) and str(ident) else f"{split}-{row.index:05d}"
    concept = row.data["question"].get("question_concept")
    return Example(
        id=ident,
        question=format_choices(stem, choices),
        answer=key.lower(),
        fields={"stem": stem, "choices": [[label.lower(), text] for label, text in choices], "concept": concept},
    )


class CommonsenseQATask(DatasetTask):
    """CommonsenseQA v1.11: split ``train`` (9741) and ``eval`` (the dev split, 1221)."""

    name = "commonsense_qa"
    verifier = "commonsense_qa"
    lm_eval_yaml = TASKS_DIR / "commonsense_qa" / "commonsense_qa.yaml"
    fewshot_file = TASKS_DIR / "commonsense_qa" / "fewshot.jsonl"

    local_files = LOCAL_FILES
    hub_splits = {split: HubSource(HUB_PATH, None, hub) for split, hub in HUB_SPLITS.items()}
    split_aliases = SPLIT_ALIASES
    adapt_hub = staticmethod(adapt_hub_record)
    parse_row = staticmethod(parse_row)

    def __init__(self, data_dir: str | None = None, skip_bad_rows: bool = False, hint_style: str = "both",
                 rationales: bool = True, choice_order: str = "original", choice_seed: int = 0,
                 answer_format: str = "text", train_permutations: int = 0) -> None:
        super().__init__(data_dir=data_dir, skip_bad_rows=skip_bad_rows, rationales=rationales)
        if hint_style not in HINT_STYLES:
            raise StarKitError(f"task 'commonsense_qa': hint_style must be one of {', '.join(HINT_STYLES)}, "
                               f"got {hint_style!r}", 2)
        if choice_order not in CHOICE_ORDERS:
            raise StarKitError(f"task 'commonsense_qa': choice_order must be one of {', '.join(CHOICE_ORDERS)}, "
                               f"got {choice_order!r}", 2)
        if answer_format not in ANSWER_FORMATS:
            raise StarKitError(f"task 'commonsense_qa': answer_format must be one of {', '.join(ANSWER_FORMATS)}, "
                               f"got {answer_format!r}", 2)
        if isinstance(train_permutations, bool) or not isinstance(train_permutations, int) or \
                not 0 <= train_permutations <= MAX_TRAIN_PERMUTATIONS:
            raise StarKitError(f"task 'commonsense_qa': train_permutations must be a whole number from 0 to "
                               f"{MAX_TRAIN_PERMUTATIONS}, got {train_permutations!r}", 2)
        self.train_permutations = train_permutations
        self.hint_style = hint_style
        self.answer_format = answer_format
        if answer_format in NAMED_FORMATS:
            self.extractor = "commonsense_qa_choice"
        self.choice_order = choice_order
        self.choice_seed = choice_seed
        for ex in self._fewshot:  # a broken exemplar file would silently lose its hints
            if choice_line(ex.question, ex.answer) is None:
                raise DataError(f"{self.fewshot_file}: exemplar answer ({ex.answer}) is not among its choices")

    def load_split(self, split: str, seed: int) -> list[Example]:
        """The split's questions; with ``choice_order=shuffle`` each one's choices in a seeded order of their own
        (:func:`shuffle_choices`, keyed on ``choice_seed`` and the question's id; the gold letter follows)."""
        examples = super().load_split(split, seed)
        if self.choice_order == "shuffle":
            examples = [shuffle_choices(e, self.choice_seed) for e in examples]
        if self.answer_format in NAMED_FORMATS:  # the gold answer names its choice: '(b) mailbox'
            examples = [dataclasses.replace(e, answer=choice_line(e.question, e.answer) or e.answer)
                        for e in examples]
        return examples

    def answer_text(self, question: str, letter: str) -> str:
        """How the answer is written after "The answer is": '(b) mailbox' (``answer_format=choice``), 'mailbox'
        (``text``) or '(b)'."""
        line = choice_line(question, letter) if self.answer_format in NAMED_FORMATS else None
        if line and self.answer_format == "text":
            return line[4:].strip()  # choice_line's lines start "(b) "
        return line or f"({letter_of(letter)})"

    def is_correct(self, predicted: str | None, gold: str) -> bool:
        """``letter``: the letters match. ``choice``: the choice text named matches the gold's (the letter written
        beside it does not count: SmolLM2-135M names the right text far more often than the right letter); a
        letter alone is compared with the gold letter. ``text``: the same text match; a letter alone is wrong (the
        prompt shows no letters)."""
        if self.answer_format == "letter":
            return super().is_correct(predicted, gold)
        if predicted is None:
            return False
        (p_letter, p_text), (g_letter, g_text) = parse_choice(predicted), parse_choice(gold)
        if p_text:
            return p_text == g_text
        if self.answer_format == "text":
            return False
        return p_letter is not None and p_letter == (g_letter or letter_of(gold))

    def answer_label(self, example: Example, answer: str | None) -> str | None:
        """The choice letter of ``answer`` ('a'..'e'), None when it is no choice of ``example``: star-kit records
        the distribution of the letters predicted on the held-out split and kept for training per iteration.
        ``text``: the letter of the choice the text names, in the order of ``example``'s choices (the original
        order unless shuffled); a letter alone has no label."""
        if not isinstance(answer, str):
            return None
        choices = [(str(label), normalize_text(str(text))) for label, text in example.fields.get("choices") or ()]
        letter, text = parse_choice(answer) if self.answer_format in NAMED_FORMATS else (letter_of(answer), "")
        if text:  # the choice the text names (what is graded); a text that is no choice has no label
            return next((label for label, choice in choices if choice == text), None)
        if self.answer_format == "text":
            return None
        return letter if letter in {label for label, _ in choices} else None

    def augment(self, example: Example, rationale: str) -> list[tuple[Example, str]]:
        """``train_permutations=K``: K choice-permuted copies of a kept pair (the optional Task hook
        ``augment``, used by :func:`star_kit.loop.build_training_set`): the same question with its choices in
        another order (:func:`permutation_orders`, seeded by ``choice_seed`` and the question's id; the gold
        choice under a different letter in each copy), the gold answer following its text, and the rationale's
        choice references re-lettered (:func:`remap_letters`). [] when K is 0, and when the rationale writes a
        letter that cannot be re-lettered safely (the pair is then trained unpermuted only)."""
        k = self.train_permutations
        choices = [(str(label), str(text)) for label, text in example.fields.get("choices") or ()]
        labels = [label for label, _ in choices]
        gold = letter_of(example.answer)
        if k <= 0 or len(choices) < 2 or gold not in labels:
            return []
        key = f"commonsense_qa:permutations:{self.choice_seed}:{example.id}"
        copies = []
        for order in permutation_orders(len(choices), labels.index(gold), k, key):
            mapping = {labels[old]: chr(ord("a") + new) for new, old in enumerate(order)}
            remapped = remap_letters(rationale, mapping, choices)
            if remapped is None:
                return []
            copies.append((reorder_choices(example, order), remapped))
        return copies

    # -- prompts: the hint marks the right choice inside the question (and/or names it after the question) ----
    def hint_sentence(self, question: str, answer: str) -> str:
        """'(Hint: the answer is (b) mailbox.)'; ``answer_format=text``: '(Hint: the answer is mailbox.)'."""
        if self.answer_format == "text":
            return f"(Hint: the answer is {self.answer_text(question, answer)}.)"
        line = choice_line(question, answer) or f"({letter_of(answer)})"
        return f"(Hint: the answer is {line}.)"

    def hinted_question(self, question: str, answer: str) -> str:
        """The question as the hinted prompt shows it (choices and all)."""
        out = mark_correct(question, answer) if self.hint_style in ("both", "correct") else question
        if self.hint_style in ("both", "answer"):
            out += " " + self.hint_sentence(question, answer)
        return out

    def hint(self, example: Example) -> str:
        """What the hinted prompt adds: the hint sentence ('(Hint: the answer is (b) mailbox.)'), or with
        ``hint_style=correct`` the marked choice line ('(b) mailbox (CORRECT)')."""
        if self.hint_style != "correct":
            return self.hint_sentence(example.question, example.answer)
        line = choice_line(example.question, example.answer)
        if line and self.answer_format == "text":
            return f"- {line[4:]} {HINT_MARK}"  # as unletter_choices shows the line
        return f"{line} {HINT_MARK}" if line else f"({letter_of(example.answer)}) {HINT_MARK}"

    def quotes_hint(self, example: Example, text: str) -> bool:
        """The hint sentence, or the (CORRECT) marker alone, repeated in a rationalized completion."""
        return super().quotes_hint(example, text) or HINT_MARK in text

    def prompt(self, example: Example, hint: bool = False, fewshot: bool = True) -> str:
        """Exemplars and the question; ``answer_format=text`` shows every question's choices without letters
        (:func:`unletter_choices`, after the hint has marked its line)."""
        shown = unletter_choices if self.answer_format == "text" else (lambda q: q)
        parts = []
        for ex in self._fewshot if fewshot else ():
            question = self.hinted_question(ex.question, ex.answer) if hint else ex.question
            parts.append(self._block(shown(question), None)
                         + self.target(ex.rationale, self.answer_text(ex.question, ex.answer)))
        question = self.format_question(example.question, example.fields)
        parts.append(self._block(shown(self.hinted_question(question, example.answer) if hint else question), None))
        return "".join(parts)

    def target(self, rationale: str, answer: str) -> str:
        """'<rationale> The answer is (b) mailbox.' (``choice``, when ``answer`` carries the text), '... mailbox.'
        (``text``, when it carries the text: '(b) mailbox' or 'mailbox') or '... (b).'."""
        letter, text = parse_choice(answer)
        if self.answer_format == "choice" and text and letter:
            return super().target(rationale, answer.strip())
        if self.answer_format == "text" and text:
            written = answer.strip()
            m = re.match(r"\(\s*[a-z]\s*\)\s*", written, re.IGNORECASE)
            return super().target(rationale, written[m.end():] if m else written)
        return super().target(rationale, f"({letter_of(answer)})")


@star_kit.hookimpl
def register_tasks(register):
    register("commonsense_qa", CommonsenseQATask)


@star_kit.hookimpl
def register_extractors(register):
    register("commonsense_qa", extract_choice)
    register("commonsense_qa_choice", extract_named_choice)


def verify_explanation(example: Example, rationale: str) -> str | None:
    """A CommonsenseQA rationale must explain something: at least 5 words before "The answer is", and no
    trace of the hint (fullwidth forms count as ASCII). None = accepted, else why not. Linear time."""
    rationale = arith.normalize_digits(rationale)
    if HINT_MARK in rationale or "hint" in rationale.lower():
        return "the rationale mentions the hint"
    if len(rationale.split()) < 5:
        return f"no explanation ({len(rationale.split())} words)"
    return None


@star_kit.hookimpl
def register_verifiers(register):
    register("commonsense_qa", verify_explanation)
