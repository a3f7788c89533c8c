"""A Sphinx extension of this book: bibliography labels in the form of its citations.

The text cites author-year (``bibtex_reference_style: author_year``: "Ding et al., 2020"), but
pybtex's default label style labels the list of references alpha-style ("DWXD20"), so a reader
cannot find a citation in the list by its label. This registers the pybtex style
``plinknet_author_year``: unsrt formatting, sorted by author and year, labelled "Ding et al., 2020"
(one author: "He, 2016"; two: "Okabe and Ito, 2008"), with a, b, ... appended where two labels would
be the same.
"""

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting.author_year_title import SortingStyle


def _names(entry) -> str:
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    last = [" ".join(person.last_names).replace("{", "").replace("}", "") for person in persons]
    if not last:
        return entry.fields.get("title", entry.key)
    if len(last) == 1:
        return last[0]
    if len(last) == 2:
        return f"{last[0]} and {last[1]}"
    return f"{last[0]} et al."


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [f"{_names(e)}, {e.fields.get('year', 'n.d.')}" for e in entries]
        repeated, seen = Counter(labels), Counter()
        for label in labels:
            if repeated[label] > 1:
                seen[label] += 1
                yield f"{label}{chr(ord('a') + seen[label] - 1)}"
            else:
                yield label


class AuthorYearStyle(UnsrtStyle):
    default_label_style = AuthorYearLabels
    default_sorting_style = SortingStyle


def setup(app):
    register_plugin("pybtex.style.formatting", "plinknet_author_year", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
