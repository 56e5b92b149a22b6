using ICSharpCode.SharpZipLib.GZip;

namespace MetaMae.Data.Formats;

/// <summary>
/// Opens a file for reading, decompressing it when its name ends in .gz. The whole-file failures of gzip are errors
/// naming the file: a ".gz" that is not gzip, and a truncated or corrupt one (SharpZipLib checks every member's CRC-32
/// and length; the framework's GZipStream returns a truncated file's first part as if it were all of it).
/// </summary>
public static class GzipFile
{
    public static bool IsGzipName(string path) => path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase);

    public static Stream OpenRead(string path)
    {
        var file = File.OpenRead(path);
        if (!IsGzipName(path)) return file;
        Span<byte> magic = stackalloc byte[2];
        int read = file.Read(magic);
        if (read < 2 || magic[0] != 0x1f || magic[1] != 0x8b)
        {
            file.Dispose();
            throw new InvalidDataException(read == 0
                ? $"{path}: the file is empty, not gzip data"
                : $"{path}: not gzip data (it starts with 0x{Convert.ToHexString(magic[..read])}, gzip with 0x1F8B); decompress or rename it");
        }
        file.Position = 0;
        return new Checked(path, new GZipInputStream(file) { IsStreamOwner = true });
    }

    /// <summary>Names the file in every decompression error.</summary>
    private sealed class Checked(string path, Stream inner) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            try
            {
                return inner.Read(buffer);
            }
            catch (Exception e) when (e is GZipException or ICSharpCode.SharpZipLib.SharpZipBaseException or EndOfStreamException or InvalidDataException)
            {
                throw new InvalidDataException($"{path}: truncated or corrupt gzip data ({e.Message})", e);
            }
        }

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
