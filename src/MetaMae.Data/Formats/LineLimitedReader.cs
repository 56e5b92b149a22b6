namespace MetaMae.Data.Formats;

/// <summary>
/// A text reader that caps line length, so one absurd line (a CSV record of 16 MB, a file with no newlines) is one bad
/// record instead of a failed or stalled parse: the first <c>maxLineChars</c> characters of such a line pass, then
/// <see cref="Marker"/>, and the rest up to its newline is dropped. Rows holding the marker are reported by the
/// readers as "line longer than the limit" with their line number; line numbering is unchanged.
/// </summary>
public sealed class LineLimitedReader(TextReader inner, int maxLineChars) : TextReader
{
    /// <summary>A Unicode noncharacter: never in real text, so its presence can only mean a cut line.</summary>
    public const char Marker = '\uFDD0';

    private readonly char[] buffer = new char[64 * 1024];
    private int pos, len, lineLength, peeked = -1;
    private bool skipping, eof;

    /// <summary>Lines cut so far.</summary>
    public int OverlongLines { get; private set; }

    private bool Fill()
    {
        if (pos < len) return true;
        if (eof) return false;
        len = inner.Read(buffer, 0, buffer.Length);
        pos = 0;
        eof = len == 0;
        return !eof;
    }

    public override int Read(Span<char> destination)
    {
        int written = 0;
        if (peeked >= 0 && destination.Length > 0)
        {
            destination[written++] = (char)peeked;
            peeked = -1;
        }
        while (written < destination.Length && Fill())
        {
            var available = buffer.AsSpan(pos, len - pos);
            int newline = available.IndexOf('\n');
            if (skipping)
            {
                if (newline < 0)
                {
                    pos = len;
                    continue;
                }
                pos += newline; // the newline itself passes below
                skipping = false;
                continue;
            }
            int lineRoom = maxLineChars - lineLength;
            int room = destination.Length - written;
            int take = newline >= 0 && newline <= lineRoom
                ? Math.Min(newline + 1, room)
                : Math.Min(Math.Min(available.Length, lineRoom), room);
            if (take == 0)
            {
                destination[written++] = Marker;
                skipping = true;
                OverlongLines++;
                continue;
            }
            available[..take].CopyTo(destination[written..]);
            written += take;
            pos += take;
            lineLength = destination[written - 1] == '\n' ? 0 : lineLength + take;
        }
        return written;
    }

    public override int Read(char[] buffer, int index, int count) => Read(buffer.AsSpan(index, count));

    public override int Read()
    {
        Span<char> one = stackalloc char[1];
        return Read(one) == 0 ? -1 : one[0];
    }

    public override int Peek()
    {
        if (peeked < 0) peeked = Read();
        return peeked;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }
}
