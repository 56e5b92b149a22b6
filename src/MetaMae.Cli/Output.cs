using Spectre.Console;

namespace MetaMae.Cli;

/// <summary>
/// Console output that reads well on a terminal and in a log. On a terminal: Spectre tables and colour, as wide as
/// COLUMNS says when it is set. Redirected (a file, a pipe, CI): no wrapping at all, no colour codes, and tables as
/// Markdown (one line per row, pasteable into a report), so nothing is cut into fragments at column 80.
/// </summary>
public static class Output
{
    public static bool Plain => Console.IsOutputRedirected;

    /// <summary>Called once at start-up, before anything is written.</summary>
    public static void Configure()
    {
        var columns = int.TryParse(Environment.GetEnvironmentVariable("COLUMNS"), out var c) && c > 0 ? c : (int?)null;
        if (Plain)
        {
            AnsiConsole.Profile.Width = columns ?? 1_000_000; // a log has no width: never wrap
            AnsiConsole.Profile.Capabilities.Ansi = false;
            AnsiConsole.Profile.Capabilities.Interactive = false;
        }
        else if (columns is { } width) AnsiConsole.Profile.Width = width;
    }

    /// <summary>A table of plain strings (no markup): Spectre on a terminal, Markdown when redirected.</summary>
    public static void Table(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows, bool? plain = null, TextWriter? to = null)
    {
        if (plain ?? Plain)
        {
            to ??= Console.Out;
            to.WriteLine(MarkdownRow(headers));
            to.WriteLine("|" + string.Concat(headers.Select(_ => "---|")));
            foreach (var row in rows) to.WriteLine(MarkdownRow(row));
            return;
        }
        var table = new Table();
        foreach (var h in headers) table.AddColumn(Markup.Escape(h));
        foreach (var row in rows) table.AddRow(row.Select(Markup.Escape).ToArray());
        AnsiConsole.Write(table);
    }

    public static string MarkdownRow(IEnumerable<string> cells) => "| " + string.Join(" | ", cells.Select(c => c.Replace("|", "\\|").Replace('\n', ' '))) + " |";
}
