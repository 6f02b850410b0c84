"""Reading a recordings folder's metadata for ``examples/build_corpus.py --from-folder`` and ``examples/finetune.py``.

A folder of audio files is listed in ``metadata.csv`` (a header naming a file, a text and optionally a speaker column,
separated by '|', ',', ';' or tab; or LJSpeech's ``id|text|normalized text`` rows without a header) or in
``metadata.jsonl`` (Hugging Face's audiofolder: one JSON object a line). ``read_metadata_layout`` reads the rows as
written and finds each row's audio file (``AudioFiles``); ``read_folder_metadata`` checks them for a corpus build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


def column_name(name: str | None) -> str:
    """A metadata.csv header name as the corpus scripts read it: `Speaker_ID`, ` speaker id` -> speaker_id."""
    return "_".join((name or "").lower().split())


# the separators a metadata.csv header may use: '|' (Coqui's header), spreadsheets export ";" where the decimal mark is
# a comma, and tabs (Common Voice's .tsv)
METADATA_DELIMITERS = ("|", ",", ";", "\t")
# separators read without CSV quoting: LJSpeech's, Coqui's and Common Voice's texts hold quotes that open no field
UNQUOTED_DELIMITERS = ("|", "\t")
# the files that list a recordings folder, the first found read (metadata.jsonl: Hugging Face's audiofolder)
METADATA_FILES = ("metadata.csv", "metadata.jsonl")
# the names a header may give each column (as `column_name` writes them), the preferred first: the corpus scripts',
# Hugging Face audiofolder's, Coqui's, Common Voice's and others in use
FILE_COLUMNS = ("file_name", "filename", "file", "audio_file", "audio", "path", "wav", "wav_path", "audio_path")
TEXT_COLUMNS = ("text", "normalized_text", "transcription", "transcript", "sentence")
SPEAKER_COLUMNS = ("speaker_id", "speaker", "speaker_name", "client_id")
# what soundfile decodes (as examples/finetune.py's AUDIO_SUFFIXES): a file named without one is looked for with them
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
# where a metadata file's audio usually lies when a row names the file alone: LJSpeech's wavs/, Common Voice's clips/
AUDIO_FOLDERS = ("wavs", "clips")
# a header-less '|' column is a speaker column when its values are names: one word, short and repeated
MAX_SPEAKER_CHARS = 64
# "did you mean" hints are looked for this many times per file (each compares the name with every audio file)
MAX_HINTS = 20


@dataclass(frozen=True)
class ColumnChoice:
    """The columns of a metadata file that --text-column / --speaker-column name in folder mode; None: the column is
    found by its usual names (TEXT_COLUMNS, SPEAKER_COLUMNS)."""

    text: str | None = None
    speaker: str | None = None


def metadata_file(folder: Path) -> Path | None:
    """FOLDER's metadata.csv, else its metadata.jsonl, else None."""
    return next((folder / name for name in METADATA_FILES if (folder / name).is_file()), None)


def loose_key(name: str) -> str:
    """A file name as a loose match compares it: a.WAV is a.wav, and an accent composed (NFC, as typed on most
    systems) or decomposed (NFD, as macOS writes file names) is one letter."""
    import unicodedata

    return unicodedata.normalize("NFC", name).casefold()


def closest_name(name: str, names: list[str]) -> str | None:
    """The name among `names` most like `name` (difflib), or None when none is close."""
    import difflib

    found = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return found[0] if found else None


class AudioFiles:
    """Finds the file a metadata row names in a recordings folder, forgiving the slips of hand-written and converted
    lists (`candidates`, `find`), and names the closest audio file when none matches (`closest`)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._listed: dict[Path, dict[str, list[Path]]] = {}  # a folder's files by `loose_key`
        self._audio: list[str] | None = None
        self._hints = 0

    @staticmethod
    def candidates(name: str, ljspeech: bool = False) -> list[str]:
        """The names a row's file may have, in the order tried: as written; with an audio suffix when it has none;
        under wavs/ or clips/ (with a suffix too). An LJSpeech id is first looked for as wavs/ID.wav and ID.wav."""
        first = [f"wavs/{name}.wav", f"{name}.wav"] if ljspeech else []
        plain = [name] + ([] if Path(name).suffix.lower() in AUDIO_SUFFIXES else [name + s for s in AUDIO_SUFFIXES])
        under = [f"{folder}/{each}" for folder in AUDIO_FOLDERS for each in plain]
        return list(dict.fromkeys(first + plain + under))

    def find(self, names: list[str]) -> Path | None:
        """The first of `names` that is a file; else the one file a name matches loosely (`loose_key`) in its
        folder; else None."""
        for name in names:
            if (self.folder / name).is_file():
                return self.folder / name
        for name in names:
            path = self.folder / name
            same = self._loose_listing(path.parent).get(loose_key(path.name), [])
            if len(same) == 1:
                return same[0]
        return None

    def _loose_listing(self, folder: Path) -> dict[str, list[Path]]:
        if folder not in self._listed:
            listing: dict[str, list[Path]] = {}
            if folder.is_dir():
                for path in folder.iterdir():
                    if path.is_file():
                        listing.setdefault(loose_key(path.name), []).append(path)
            self._listed[folder] = listing
        return self._listed[folder]

    def closest(self, name: str) -> str | None:
        """The audio file under the folder (relative to it) whose name is most like `name`, for the first
        `MAX_HINTS` names asked about (each is compared with every file)."""
        if self._hints >= MAX_HINTS:
            return None
        self._hints += 1
        if self._audio is None:
            self._audio = sorted(
                p.relative_to(self.folder).as_posix()
                for p in self.folder.rglob("*")
                if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
            )
        return closest_name(name, self._audio)

    def did_you_mean(self, name: str) -> str:
        """' (did you mean NAME?)' with the closest audio file, or ''."""
        close = self.closest(name)
        return f" (did you mean {close}?)" if close else ""


@dataclass
class MetadataRow:
    """One row of a recordings folder's metadata file as it is written; each script judges it by its own rules."""

    line: int  # the line of the metadata file the row starts on
    name: str  # the audio file relative to the folder: as the row names it, or the file found for it (`AudioFiles`)
    path: Path  # `name` resolved against the folder
    text: str | None  # None: the row has no text field
    speaker: str | None  # None: the layout has no speaker column ("" is an empty cell)
    fields: int  # how many fields the row has
    cells: dict[str, str] = field(default_factory=dict)  # a header row's fields by `column_name`


@dataclass
class FolderMetadata:
    """A recordings folder's metadata file read in one of its layouts: a header naming a file column and a text column
    and optionally a speaker column, separated by `delimiter`; LJSpeech-style `id|text...` rows without a header; or
    metadata.jsonl's objects (`delimiter` None for both)."""

    path: Path
    delimiter: str | None
    written: list[str]  # the header's names as written
    header: list[str]  # as `column_name` reads them
    file_column: str | None  # the columns read, as `column_name` writes them (None: header-less rows)
    text_column: str | None
    speaker_column: str | None  # header-less rows: "column N" when one holds the speakers
    rows: list[MetadataRow]
    notes: list[str] = field(default_factory=list)  # how the file was read, where that is not the plain layout
    files: AudioFiles | None = None

    def too_many_fields(self, row: MetadataRow) -> str | None:
        """What is wrong with a header row that has more fields than the header (an unquoted delimiter in its text
        cut it and shifted the rest), or None."""
        if self.delimiter is None or row.fields <= len(self.header):
            return None
        return f"{row.fields} fields where the header has {len(self.header)}"

    @property
    def quote_hint(self) -> str:
        if self.delimiter in UNQUOTED_DELIMITERS:  # read without quoting: quotes would not help
            return (
                f"a text cannot hold {self.delimiter!r} in this file, which is read without quoting: replace it, or "
                "write the file separated by ',' with such texts in double quotes"
            )
        return f"put a text that contains {self.delimiter!r} in double quotes"

    def did_you_mean(self, row: MetadataRow) -> str:
        return self.files.did_you_mean(row.name) if self.files is not None else ""


def print_metadata_notes(table: FolderMetadata, prefix: str = "") -> None:
    """Print how a metadata file was read where that is not its plain layout (columns under other names or not used,
    speakers found in header-less rows), so that no column is left out or misread without a word."""
    for note in table.notes:
        print(f"{prefix}{table.path}: {note}", flush=True)


def read_metadata_layout(folder: Path, columns: ColumnChoice | None = None) -> FolderMetadata:
    """FOLDER's metadata.csv (else metadata.jsonl) rows in the layout it is written in: a header with a file column
    and a text column (optional speaker column; names as in FILE_COLUMNS, TEXT_COLUMNS, SPEAKER_COLUMNS, or as
    `columns` names them, in any case, quoted or not) separated by '|', ',', ';' or tab; LJSpeech's `id|text|normalized
    text` rows without a header (`_read_pipe_rows`); or JSON objects with those keys, one a line. Each row's file is
    looked for as `AudioFiles.find` does. Only what makes the file unreadable stops here; the rows' contents are left
    to the caller to judge."""
    path, columns = metadata_file(folder), columns or ColumnChoice()
    if path is None:
        raise SystemExit(f"{folder}: no {' or '.join(METADATA_FILES)}")
    try:  # utf-8-sig: spreadsheet programs save "CSV UTF-8" with a byte-order mark before the header
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SystemExit(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8 (e.g. `iconv -f latin1 "
            "-t utf-8`)"
        ) from None
    if not text.strip():
        raise SystemExit(
            f"{path}: empty; list the recordings under a header file_name,text[,speaker_id], or as LJSpeech's "
            "id|text|normalized text rows"
        )
    files = AudioFiles(folder)
    if path.suffix == ".jsonl":
        table = _read_json_lines(path, text, files, columns)
    else:
        table = _read_delimited(path, text, files, columns)
    if path.name == "metadata.csv" and (folder / "metadata.jsonl").is_file():  # both would be a guess
        table.notes.insert(0, "read, not metadata.jsonl beside it (remove the one you do not mean)")
    table.files = files
    return table


def _read_delimited(path: Path, text: str, files: AudioFiles, columns: ColumnChoice) -> FolderMetadata:
    first = text.splitlines()[0]
    # a first line with '|' is a '|' header or LJSpeech's first row, whose text may hold ", audio," (no comma header)
    delimiters = ("|",) if "|" in first else METADATA_DELIMITERS
    delimiter = next((d for d in delimiters if _is_header(first, d, columns)), None)
    if delimiter is not None:
        return _read_header_rows(path, text, delimiter, files, columns)
    if "|" in first:
        if columns.text or columns.speaker:
            raise SystemExit(
                f"{path}: --text-column and --speaker-column name columns of a header, and this file's `id|...` rows "
                "have none; leave them out (the speaker column is found by its values) or add a header"
            )
        return _read_pipe_rows(path, text.splitlines(), files)
    raise SystemExit(
        f"{path}:1: expected a header naming a file column ({', '.join(FILE_COLUMNS[:3])}, ...) and a text column "
        f"({', '.join(TEXT_COLUMNS[:3])}, ...) separated by '|', ',', ';' or tab, or LJSpeech's `id|text[|normalized "
        f"text]` rows, got {first!r}"
    )


def _is_header(line: str, delimiter: str, columns: ColumnChoice) -> bool:
    """Whether `line` is a header separated by `delimiter`: it names a file column (and a '|' line a text column too,
    as LJSpeech's rows are '|' lines that name nothing)."""
    names = [column_name(cell) for cell in _split_cells(line, delimiter)]
    texts = TEXT_COLUMNS + ((column_name(columns.text),) if columns.text else ())
    return any(n in FILE_COLUMNS for n in names) and (delimiter != "|" or any(n in texts for n in names))


def _csv_reader(source, delimiter: str):
    import csv

    # skipinitialspace: in `a.wav, "Hello, there.", anna` the quotes still quote (they were kept in the text)
    if delimiter in UNQUOTED_DELIMITERS:
        return csv.reader(source, delimiter=delimiter, quoting=csv.QUOTE_NONE, skipinitialspace=True)
    return csv.reader(source, delimiter=delimiter, skipinitialspace=True)


def _split_cells(line: str, delimiter: str) -> list[str]:
    return [_cell(cell, delimiter) for cell in next(_csv_reader([line], delimiter), [])]


def _cell(value: str, delimiter: str) -> str:
    """A field of a file read without quoting as its writer meant it: a tab-separated spreadsheet export wraps a text
    in double quotes and doubles those inside ("He said ""hi"".") -> He said "hi".; a text that only starts or ends
    with a quote ("Come here," she said.) is the text as written."""
    stripped = value.strip()
    inner = stripped[1:-1]
    quoted = len(stripped) >= 2 and stripped[0] == stripped[-1] == '"'
    if delimiter == "\t" and quoted and '"' not in inner.replace('""', ""):
        return inner.replace('""', '"')
    return value


def _read_header_rows(path: Path, text: str, delimiter: str, files: AudioFiles, columns: ColumnChoice):
    import csv
    import io

    reader = _csv_reader(io.StringIO(text, newline=""), delimiter)
    lines = io.StringIO(text, newline="").readlines()  # as the reader counts them
    try:
        written = [_cell(name, delimiter) for name in next(reader)]
        header = [column_name(name) for name in written]
        file_column, text_column, speaker_column = _choose_columns(path, written, header, columns)
        rows, end = [], reader.line_num
        for fields in reader:
            start, end = end + 1, reader.line_num  # a quoted text may span lines: name the one its row starts on
            if not fields:  # a blank line
                continue
            if end > start and delimiter not in UNQUOTED_DELIMITERS:
                _check_quote_closes(path, lines, start, end, delimiter, header.index(file_column), files)
            # fewer fields than names: the missing ones read as None; more: counted in `fields`; a name written
            # twice: its last column (read_folder_metadata refuses such a header)
            cells = dict(zip(header, (_cell(value, delimiter) for value in fields), strict=False))
            speaker = None if speaker_column is None else (cells.get(speaker_column) or "").strip()
            rows.append(_row(files, start, cells.get(file_column), cells.get(text_column), speaker, len(fields), cells))
    except csv.Error as error:  # e.g. a NUL byte: a binary file saved as metadata.csv
        raise SystemExit(f"{path}:{reader.line_num}: not CSV text ({error})") from None
    table = FolderMetadata(path, delimiter, written, header, file_column, text_column, speaker_column, rows)
    table.notes += _column_notes(table)
    return table


def _check_quote_closes(
    path: Path, lines: list[str], start: int, end: int, delimiter: str, file_index: int, files: AudioFiles
) -> None:
    """A quoted text that runs on over lines that start another row (an audio file's name in the file column) lost
    its closing quote: those rows became its text. Stop, naming the line the quote opens on."""
    for number in range(start + 1, end + 1):
        cells = lines[number - 1].split(delimiter)
        name = cells[file_index].strip().strip('"') if len(cells) > file_index else ""
        if name and files.find(AudioFiles.candidates(name)) is not None:
            raise SystemExit(
                f"{path}:{start}: a double quote opens a text on this line and is not closed before line {number}, "
                f"which starts the row of {name}: close the text with a double quote, or write a quote that is part "
                'of the text as two ("")'
            )


def _choose_columns(path: Path, written: list[str], header: list[str], columns: ColumnChoice):
    """(file column, text column, speaker column or None) of a header: those `columns` names, else the first of each
    list of usual names that the header has."""
    shown = ", ".join(map(repr, written))

    def named(flag: str, name: str) -> str:
        if column_name(name) not in header:
            raise SystemExit(f"{path}: {flag} {name}: the header has no such column; its columns are {shown}")
        return column_name(name)

    file_column = next((name for name in FILE_COLUMNS if name in header), None)
    if file_column is None:
        raise SystemExit(
            f"{path}: no column names the audio files ({', '.join(FILE_COLUMNS)}); its columns are {shown}"
        )
    if columns.text:
        text_column = named("--text-column", columns.text)
    else:
        text_column = next((name for name in TEXT_COLUMNS if name in header), None)
    if text_column is None:
        raise SystemExit(
            f"{path}: no transcript column ({', '.join(TEXT_COLUMNS)}); its columns are {shown}: rename the "
            "transcript column, or name it with --text-column"
        )
    if columns.speaker:
        return file_column, text_column, named("--speaker-column", columns.speaker)
    return file_column, text_column, next((name for name in SPEAKER_COLUMNS if name in header), None)


def _row(files: AudioFiles, line: int, written: str | None, text, speaker, fields: int, cells=None) -> MetadataRow:
    """A header row with its file looked for as `AudioFiles.find` does; a file found under another name is named as
    found (so that a fixed metadata file later keeps its split)."""
    name = (written or "").strip()
    found = files.find(AudioFiles.candidates(name)) if name else None
    if found is not None and found != files.folder / name:
        name = found.relative_to(files.folder).as_posix()
    return MetadataRow(line, name, files.folder / name, text, speaker, fields, cells or {})


def _column_notes(table: FolderMetadata) -> list[str]:
    """The notes on a header's columns: which were read where they are not file_name/text/speaker_id, and which were
    not used (e.g. a speaker column under a name not known here, whose speakers would merge without a word)."""
    written = dict(zip(table.header, table.written, strict=True))
    file_column, text_column, speaker_column = table.file_column, table.text_column, table.speaker_column
    notes = []
    if (file_column, text_column) != ("file_name", "text") or speaker_column not in (None, "speaker_id"):
        notes.append(
            f"columns read: the audio files from {written[file_column]!r}, the transcripts from "
            f"{written[text_column]!r}" + (f", the speakers from {written[speaker_column]!r}" if speaker_column else "")
        )
    used = (file_column, text_column, speaker_column)
    unused = [name for name, read_as in zip(table.written, table.header, strict=True) if read_as not in used]
    if unused:
        notes.append(
            f"columns not used: {', '.join(map(repr, unused))} (read: {file_column}, {text_column}"
            + (
                f", {speaker_column})"
                if speaker_column
                else f"; no speaker column ({', '.join(SPEAKER_COLUMNS)}; or name one with --speaker-column): one "
                "speaker)"
            )
        )
    return notes


def _read_pipe_rows(path: Path, lines: list[str], files: AudioFiles) -> FolderMetadata:
    """LJSpeech-style rows without a header: `id|text|normalized text` (the normalized text when it is not empty; the
    audio is wavs/ID.wav, ID.wav or ID in the folder, or as `AudioFiles.find` finds it), and the like with a speaker
    column (`id|text|speaker`, piper's `id|speaker|text`, `id|text|normalized|speaker`), found by its values
    (`_pipe_columns`). Every row has the fields of the first (no quoting: LJSpeech's texts hold quotes)."""
    numbered = [(number, line.split("|")) for number, line in enumerate(lines, 1) if line.strip()]
    width = len(numbered[0][1])
    for number, parts in numbered:
        if len(parts) != width:
            raise SystemExit(
                f"{path}:{number}: {len(parts)} fields where the first row has {width}: every row needs the same "
                f"`id|...` fields, and a text cannot hold '|', got {lines[number - 1]!r}"
            )
    speaker, texts, notes = _pipe_columns([parts for _, parts in numbered])
    rows = []
    for number, parts in numbered:
        clip = parts[0].strip()
        candidates = AudioFiles.candidates(clip, ljspeech=True)
        found = files.find(candidates)
        name = candidates[0] if found is None else found.relative_to(files.folder).as_posix()
        text = next((parts[i] for i in reversed(texts) if parts[i].strip()), parts[texts[-1]])  # the last written
        who = None if speaker is None else parts[speaker].strip()
        rows.append(MetadataRow(number, name, files.folder / name, text, who, width))
    column = None if speaker is None else f"column {speaker + 1}"
    return FolderMetadata(path, None, [], [], None, None, column, rows, notes)


def _speaker_like(values: list[str]) -> bool:
    """Whether a header-less column's values look like speaker names: all one word (no whitespace) of at most
    MAX_SPEAKER_CHARS characters, and repeated (fewer distinct values than rows)."""
    words = [value.strip() for value in values]
    named = all(word and len(word) <= MAX_SPEAKER_CHARS and len(word.split()) == 1 for word in words)
    return named and len(set(words)) < len(words)


def _pipe_columns(rows: list[list[str]]) -> tuple[int | None, list[int], list[str]]:
    """(speaker column or None, text columns, notes) of header-less '|' rows, counting from 0 (column 0 is the id).
    The one column after the id whose values look like speakers (`_speaker_like`) is the speaker column; when all of
    them look so (one-word texts) none is, as in LJSpeech's rows; several such columns are labels, not used. The
    text is the last non-empty text column."""
    width = len(rows[0])
    like = [i for i in range(1, width) if _speaker_like([row[i] for row in rows])]
    if len(like) == width - 1:
        like = []
    speaker = like[0] if len(like) == 1 else None
    texts = [i for i in range(1, width) if i not in like]
    if speaker is None and not like and width <= 3:  # LJSpeech's own layout: nothing to say
        return None, texts, []
    said = f"column {texts[0] + 1}" if len(texts) == 1 else f"the last non-empty of columns {_numbers(texts)}"
    note = f"rows without a header read as: column 1 the audio file id, the text {said}"
    if speaker is not None:
        names = sorted({row[speaker].strip() for row in rows})
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        note += f", column {speaker + 1} the speaker ({len(names)} speakers: {shown})"
    elif like:
        note += f"; columns {_numbers(like)} look like labels (one repeated word) and are not used: one speaker"
    return speaker, texts, [note]


def _numbers(columns: list[int]) -> str:
    return ", ".join(str(i + 1) for i in columns)


def _read_json_lines(path: Path, text: str, files: AudioFiles, columns: ColumnChoice) -> FolderMetadata:
    """metadata.jsonl (Hugging Face's audiofolder): one JSON object a line, its keys the columns of a header."""
    objects = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise SystemExit(
                f"{path}:{number}: not a JSON object; write one object a line, e.g. "
                '{"file_name": "a.wav", "text": "Hello."}' + f", got {line[:80]!r}"
            )
        objects.append((number, value))
    written = list(dict.fromkeys(key for _, value in objects for key in value))
    header = [column_name(name) for name in written]
    file_column, text_column, speaker_column = _choose_columns(path, written, header, columns)
    rows = []
    for number, value in objects:
        cells = {column_name(key): _json_text(cell) for key, cell in value.items()}
        speaker = None if speaker_column is None else (cells.get(speaker_column) or "").strip()
        rows.append(_row(files, number, cells.get(file_column), cells.get(text_column), speaker, len(value), cells))
    table = FolderMetadata(path, None, written, header, file_column, text_column, speaker_column, rows)
    table.notes += _column_notes(table)
    return table


def _json_text(value) -> str | None:
    """A JSON value as a cell of a CSV row: a string as it is, a number (a speaker id 225) as JSON writes it."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def common_voice_lists(folder: Path) -> list[str]:
    """The Common Voice lists (a .tsv with the columns path and sentence) at the top of `folder`."""
    found = []
    for tsv in sorted(folder.glob("*.tsv")):
        with tsv.open(encoding="utf-8-sig", errors="replace") as f:
            names = {column_name(name) for name in f.readline().split("\t")}
        if {"path", "sentence"} <= names:
            found.append(tsv.name)
    return found


def common_voice_hint(folder: Path, lists: list[str]) -> str:
    """How to use a Common Voice folder: copy one of its lists to metadata.csv, which reads its columns as they are."""
    return (
        f"{folder} holds Common Voice lists ({', '.join(lists)}), which are not read as they are: copy the one to use "
        f"to metadata.csv, e.g. `cp {folder / lists[0]} {folder / 'metadata.csv'}`; its path, sentence and client_id "
        "columns are then read as the file, transcript and speaker, and the files are found in clips/"
    )


def speaker_column_note(column_names: list[str]) -> str | None:
    """A note for a dataset read without --speaker-column that has a speaker column (SPEAKER_COLUMNS): every row
    becomes one speaker, which the user may not mean."""
    found = [name for name in column_names if column_name(name) in SPEAKER_COLUMNS]
    if not found:
        return None
    return (
        f"note: without --speaker-column all rows are one speaker; the dataset has a {found[0]!r} column: pass "
        f"--speaker-column {found[0]} to keep its speakers"
    )


def read_folder_metadata(folder: Path, columns: ColumnChoice | None = None) -> list[dict]:
    """Rows of FOLDER's metadata file (in a layout `read_metadata_layout` reads), with each file resolved against
    FOLDER. Every row needs a transcript, a speaker (when the layout has a speaker column) and a readable audio file;
    the rows that do not have them are named, with their line numbers. A file listed again with the same transcript
    and speaker is used once (a copy in both splits would score the model on its training data)."""
    import soundfile as sf

    table = read_metadata_layout(folder, columns)
    path, header, speaker_column = table.path, table.header, table.speaker_column
    used = (table.file_column, table.text_column, speaker_column)
    twice = [name for name in used if name and header.count(name) > 1]
    if twice:
        raise SystemExit(f"{path}: the header names {', '.join(twice)} more than once; keep one column of each")
    print_metadata_notes(table, "[folder] ")
    if not table.rows:
        raise SystemExit(f"{path}: the header has no rows under it; add one row per audio file")
    problems, repeated, first_seen, items = [], [], {}, []
    for row in table.rows:
        line, name, audio = row.line, row.name, row.path
        extra = table.too_many_fields(row)
        if extra:
            problems.append(f"line {line}: {extra} ({table.quote_hint})")
            continue
        text = (row.text or "").strip()
        speaker = "speaker" if row.speaker is None else row.speaker
        if not text:
            problems.append(f"line {line} ({name}): no transcript")
        elif not speaker:
            problems.append(f"line {line} ({name}): no {speaker_column}")
        elif not audio.is_file():
            missing = "is a folder, not an audio file" if audio.is_dir() else "is missing" + table.did_you_mean(row)
            problems.append(f"line {line}: {name} {missing}")
        elif audio.resolve() in first_seen:
            earlier, *same = first_seen[audio.resolve()]
            if same == [text, speaker]:
                repeated.append(f"{name} (line {line}, as line {earlier})")
            else:
                problems.append(f"line {line}: {name} is on line {earlier} too, with another transcript or speaker")
        else:
            try:
                sf.info(str(audio))
            except Exception as error:  # soundfile raises several types for files it cannot read
                problems.append(f"line {line}: {name} is not audio soundfile can read ({type(error).__name__})")
                continue
            first_seen[audio.resolve()] = (line, text, speaker)
            items.append({"audio": {"path": str(audio)}, "text": text, "speaker_id": speaker, "file_name": name})
    if problems:
        raise SystemExit(
            f"{path}: {len(problems)} of {len(table.rows)} rows cannot be used: "
            + "; ".join(problems[:5])
            + ("; ..." if len(problems) > 5 else "")
            + ". Fix them or remove the rows (examples/finetune.py lists and leaves out such clips itself)"
        )
    if repeated:
        print(
            f"[folder] {path}: {len(repeated)} rows repeat a file listed before and are left out: "
            + ", ".join(repeated[:5])
            + (", ..." if len(repeated) > 5 else ""),
            flush=True,
        )
    return items


def check_folder_is_listed(folder: Path) -> None:
    """--from-folder needs a metadata file; name what it needs, and how to make one of a Common Voice folder's lists."""
    if metadata_file(folder) is not None:
        return
    lists = common_voice_lists(folder) if folder.is_dir() else []
    if lists:
        raise SystemExit(f"--from-folder {folder} has no metadata.csv: {common_voice_hint(folder, lists)}")
    what = "has no metadata.csv" if folder.is_dir() else "is not a folder"
    raise SystemExit(
        f"--from-folder {folder} {what}: it needs DIR/metadata.csv with the columns file_name and text "
        "(optionally speaker_id), one row per audio file, or LJSpeech's id|text|normalized text rows (or a "
        "metadata.jsonl with those keys)"
    )


def check_not_recordings(folder: Path) -> None:
    """Refuse a folder of recordings given to --from-hub-dataset: `load_dataset` reads it as an audiofolder, whose
    audio it decodes with torchcodec (a traceback where that is missing); --from-folder reads it with soundfile."""
    listed = metadata_file(folder)
    audio = next((p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES), None)
    if listed is not None or audio is not None:
        what = f"it has {listed.name}" if listed is not None else f"it holds audio files such as {audio.name}"
        raise SystemExit(
            f"--from-hub-dataset {folder}: a folder of recordings ({what}), not a dataset saved with save_to_disk: "
            f"read it with --from-folder {folder} (a metadata.csv or metadata.jsonl naming each file and its text)"
        )
