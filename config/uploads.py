"""A size limit that holds while a file upload streams in, not after it was written to disk.

Django's own limits (``DATA_UPLOAD_MAX_MEMORY_SIZE``) leave files out: an upload of any size is
written whole to a temporary file before a form could look at its size. ``UploadSizeLimit``
goes first among the request's upload handlers: the byte past the limit makes the file skipped
(the handlers after it have written no more than the limit, and Django deletes their partial
temporary file), and a request whose Content-Length alone says that no file of it can fit
writes no byte of any file. The rest of the form is still read, so the page can say why and
keep what else was filled in.

It must be in place before anything reads the request body, and the CSRF check reads it: wrap
the view in ``csrf_exempt`` and check CSRF inside, after inserting the handler (Django's
documented pattern for per-view upload handlers).

Every other request takes no file at all (``FilesRefused``, in ``FILE_UPLOAD_HANDLERS``):
the CSRF check reads ``request.POST`` on any POST, signed in or not, and Django would otherwise
write any file part of it, of any size, to a temporary file. ``upload_size_limit_install``
puts its limit in that handler's place.

A multipart body's text fields (not its files) must be UTF-8: Django decodes them with U+FFFD in
place of bytes that are not, and a title would be stored changed without a word.
``FormTextUtf8Only``, also in ``FILE_UPLOAD_HANDLERS``, has the body parsed as Django parses it
but for that decoding, which is strict: such a field raises ``FormTextNotUtf8`` (a
``MultiPartParserError``: Django answers it with a 400, ``config.api.handler400`` in words),
whoever reads the body first (the CSRF check, a view after installing its size limit).
"""

import codecs

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParser, MultiPartParserError

# Room in a request's body beside the file: each part's headers and boundary, for the few
# fields a form has (their values are bounded by DATA_UPLOAD_MAX_MEMORY_SIZE, added to this).
PART_HEADERS_ROOM = 64 * 1024


class UploadSizeLimit(FileUploadHandler):
    """Skip an uploaded file once it passes ``limit`` bytes; ``exceeded`` says it happened."""

    def __init__(self, request: HttpRequest, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.exceeded = False
        self.received = 0
        self.request_too_long = False

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None) -> None:
        fields_room = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if (
            fields_room is not None
            and content_length > self.limit + fields_room + PART_HEADERS_ROOM
        ):
            self.exceeded = self.request_too_long = True
        return None  # Django parses the body; this only decides about its files

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        if self.request_too_long:
            # Before the handlers after this one open a temporary file for it.
            raise SkipFile
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise SkipFile
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handlers build the uploaded file


class FilesRefused(FileUploadHandler):
    """The default for every request: each file part is skipped unread, before the handlers
    after this one open a file for it (the rest of the form is read as usual). A view that
    takes a file replaces it with its limit (``upload_size_limit_install``)."""

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        raise SkipFile

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        return raw_data  # never reached: every file is skipped at its start

    def file_complete(self, file_size: int) -> None:
        return None


def upload_size_limit_install(request: HttpRequest, *, limit: int) -> UploadSizeLimit:
    """Take files in ``request``, up to ``limit`` bytes each: the size limit goes first among
    its upload handlers, in place of ``FilesRefused``; returns it, to ask ``exceeded`` once the
    body was read."""
    size_limit = UploadSizeLimit(request, limit)
    request.upload_handlers = [
        size_limit,
        *(handler for handler in request.upload_handlers if not isinstance(handler, FilesRefused)),
    ]
    return size_limit


class FormTextNotUtf8(MultiPartParserError):
    """A multipart body's text field held bytes that are not UTF-8."""


# Django's parser decodes each text field with ``errors="replace"``, which it does not let a
# caller change; this codec is UTF-8 that refuses bad bytes whatever ``errors`` asks.
STRICT_UTF8 = "tandem_strict_utf_8"


def _strict_utf8_decode(data: bytes, errors: str = "strict") -> tuple[str, int]:
    return codecs.utf_8_decode(data, "strict", True)


def _strict_utf8_search(name: str) -> codecs.CodecInfo | None:
    if name.replace("-", "_") != STRICT_UTF8:
        return None
    return codecs.CodecInfo(codecs.utf_8_encode, _strict_utf8_decode, name=STRICT_UTF8)


codecs.register(_strict_utf8_search)


class FormTextUtf8Only(FileUploadHandler):
    """Parse a multipart body as Django does, with the request's other upload handlers taking
    its files, but with its text fields decoded strictly: one that is not UTF-8 raises
    ``FormTextNotUtf8``. Fields are read within ``DATA_UPLOAD_MAX_MEMORY_SIZE`` as Django reads
    them, once; files stream to the other handlers unread by this one. A body that declares
    another charset than UTF-8 (its Content-Type's ``charset``) raises ``FormTextNotUtf8`` too:
    Django's parser would decode it with U+FFFD in place of what that charset cannot read, as
    it would a body naming this module's own codec."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if codecs.lookup(encoding or settings.DEFAULT_CHARSET).name != "utf-8":
            raise FormTextNotUtf8("The form declares another charset than UTF-8.")
        others = [handler for handler in self.request.upload_handlers if handler is not self]
        parser = MultiPartParser(META, input_data, others, STRICT_UTF8)
        try:
            return parser.parse()
        except UnicodeDecodeError as error:
            raise FormTextNotUtf8("A text field of the form is not UTF-8.") from error

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        return raw_data  # never reached: this handler parses the body or refuses it

    def file_complete(self, file_size: int) -> None:
        return None
