using OrasStaging.TestKit;

namespace OrasStaging.Tests.DiskImages;

/// <summary>Raw images of the shapes the issue names, and their encodings with the real CLIs.</summary>
internal static class TestInputs
{
    public static readonly string[] Shapes = { "realistic-5MiB+100", "realistic-5MiB+512", "allzero-3MiB", "empty", "random-1MiB+4KiB" };
    public static readonly string[] Encodings = { "none", "gzip", "gzip-2members", "zstd-frames", "xz", "bzip2" };

    public static string MakeRaw(TempDir dir, string shape)
    {
        string path = dir.File("input.raw");
        switch (shape)
        {
            case "realistic-5MiB+100":
                DiskImageGenerator.WriteFile(path, (5L << 20) + 100, seed: 1);
                break;
            case "realistic-5MiB+512":
                DiskImageGenerator.WriteFile(path, (5L << 20) + 512, seed: 2);
                break;
            case "allzero-3MiB":
                DiskImageGenerator.WriteFile(path, 3L << 20, seed: 3, ImageShape.AllZero);
                break;
            case "empty":
                File.WriteAllBytes(path, Array.Empty<byte>());
                break;
            case "random-1MiB+4KiB":
                DiskImageGenerator.WriteFile(path, (1L << 20) + 4096, seed: 4, ImageShape.Random);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(shape));
        }

        return path;
    }

    public static string Encode(TempDir dir, string raw, string encoding)
    {
        switch (encoding)
        {
            case "none":
                return raw;
            case "gzip":
                return Compressed(dir, "gzip", raw, ".gz");
            case "xz":
                return Compressed(dir, "xz", raw, ".xz");
            case "bzip2":
                return Compressed(dir, "bzip2", raw, ".bz2");
            case "gzip-2members":
            {
                var (a, b) = Split(dir, raw);
                return Concat(dir.File("input.raw.gz"), Compressed(dir, "gzip", a, ".gz"), Compressed(dir, "gzip", b, ".gz"));
            }

            case "zstd-frames":
            {
                // Skippable frames before, between and after two data frames.
                var (a, b) = Split(dir, raw);
                string s1 = Skippable(dir, "s1", 0x184D2A50, 12);
                string s2 = Skippable(dir, "s2", 0x184D2A5F, 0);
                return Concat(dir.File("input.raw.zst"), s1, Compressed(dir, "zstd", a, ".zst", "-q"), s2,
                    Compressed(dir, "zstd", b, ".zst", "-q"), s1);
            }

            default:
                throw new ArgumentOutOfRangeException(nameof(encoding));
        }
    }

    public static string Compressed(TempDir dir, string tool, string input, string ext, params string[] extra)
    {
        string output = input + ext;
        ImageTools.Compress(tool, input, output, extra);
        return output;
    }

    private static (string A, string B) Split(TempDir dir, string raw)
    {
        byte[] all = File.ReadAllBytes(raw);
        int cut = all.Length / 3;
        string a = dir.File("part-a"), b = dir.File("part-b");
        File.WriteAllBytes(a, all[..cut]);
        File.WriteAllBytes(b, all[cut..]);
        return (a, b);
    }

    private static string Skippable(TempDir dir, string name, uint magic, int payload)
    {
        var frame = new byte[8 + payload];
        BitConverter.TryWriteBytes(frame.AsSpan(0), magic);
        BitConverter.TryWriteBytes(frame.AsSpan(4), payload);
        frame.AsSpan(8).Fill(0xAB);
        string path = dir.File(name);
        File.WriteAllBytes(path, frame);
        return path;
    }

    private static string Concat(string output, params string[] parts)
    {
        using var file = File.Create(output);
        foreach (string part in parts)
        {
            using var p = File.OpenRead(part);
            p.CopyTo(file);
        }

        return output;
    }

    public static long RoundUp(long v, long unit) => (v + unit - 1) / unit * unit;
}

/// <summary>Gives its bytes, then fails the way a download that detects a bad digest would.</summary>
internal sealed class FailingStream : Stream
{
    private readonly Stream _inner;
    private readonly long _failAfter;
    private long _read;

    public FailingStream(Stream inner, long failAfter, Exception failure)
    {
        _inner = inner;
        _failAfter = failAfter;
        Failure = failure;
    }

    public Exception Failure { get; }

    public override int Read(byte[] buffer, int offset, int count)
    {
        if (_read >= _failAfter)
        {
            throw Failure;
        }

        int n = _inner.Read(buffer, offset, (int)Math.Min(count, _failAfter - _read));
        _read += n;
        return n;
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _read; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _inner.Dispose();
        }

        base.Dispose(disposing);
    }
}
