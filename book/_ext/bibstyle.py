"""Bibliography style for the Sources page: pybtex's ``plain`` with a sort that ignores braces.

Organisations are written as ``{Stack Overflow Blog}`` in references.bib so that their names
are not split into first and last names. pybtex's default sort keeps the brace, which puts
every organisation after Z; this style sorts them by their name like everyone else.
"""
from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.sorting.author_year_title import SortingStyle as AuthorYearTitle


class BracelessSorting(AuthorYearTitle):
    def person_key(self, person):
        return super().person_key(person).replace("{", "").replace("}", "")


class PlainBraceless(PlainStyle):
    default_sorting_style = "author_year_title_braceless"


def setup(app):
    register_plugin("pybtex.style.sorting", "author_year_title_braceless", BracelessSorting)
    register_plugin("pybtex.style.formatting", "plain_braceless", PlainBraceless)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
