"""The writer's site as publisher reads it: post files in, :class:`~publisher.site.posts.Post` out.

Front matter (:mod:`.matter`), dates (:mod:`.dates`), slugs and permalinks
(:mod:`.urls`), Markdown to safe HTML and excerpts (:mod:`.markup`), and the
Jinja2 environment over the site's ``templates/`` folder (:mod:`.templating`).

Pure apart from :mod:`.templating`'s loader: nothing here writes a file, and
nothing here imports the build, the feeds, mail, the store or the web.
"""
