using System.Security.Cryptography;
using OrasStaging.DiskImages;
using OrasStaging.Staging;

namespace OrasStaging.Tests.Staging;

/// <summary>An in-memory artifact whose blob stream checks its digest at the end, as the registry client's does.</summary>
internal sealed class FakeSource : IStagingSource
{
    private readonly byte[] _blob;

    public FakeSource(byte[] blob, string? manifestDigest = "sha256:ab12000000000000000000000000000000000000000000000000000000000000", string? tag = "latest")
    {
        _blob = blob;
        Digest = DigestOf(blob);
        ManifestDigest = manifestDigest;
        Tag = tag;
    }

    public string Digest { get; set; }

    public string? ManifestDigest { get; }

    public string? Tag { get; }

    public int Resolves { get; private set; }

    public int Opens { get; private set; }

    /// <summary>When set, the stream flips this byte, so the digest check at the end fails.</summary>
    public int? CorruptAt { get; set; }

    /// <summary>When set, the stream waits on this before handing out bytes past the first read.</summary>
    public SemaphoreSlim? Gate { get; set; }

    public static string DigestOf(byte[] data) => "sha256:" + Convert.ToHexString(SHA256.HashData(data)).ToLowerInvariant();

    public Task<ResolvedLayer> ResolveAsync(CancellationToken cancellationToken)
    {
        Resolves++;
        return Task.FromResult(new ResolvedLayer
        {
            Reference = "oras://127.0.0.1:5000/lab/disk:latest",
            Registry = "127.0.0.1:5000",
            Repository = "lab/disk",
            Tag = Tag,
            ManifestDigest = ManifestDigest,
            Digest = Digest,
            Size = _blob.Length,
            MediaType = "application/vnd.nosi.disk-image.layer.v1+gzip",
            Title = "disk.img.gz",
        });
    }

    public Task<Stream> OpenBlobAsync(ResolvedLayer layer, CancellationToken cancellationToken)
    {
        Opens++;
        byte[] data = (byte[])_blob.Clone();
        if (CorruptAt is { } at)
        {
            data[at] ^= 0x40;
        }

        Stream stream = new VerifyingStream(new SlowStream(new MemoryStream(data), Gate), layer.Digest);
        return Task.FromResult(stream);
    }

    private sealed class SlowStream : Stream
    {
        private readonly Stream _inner;
        private readonly SemaphoreSlim? _gate;
        private bool _first = true;

        public SlowStream(Stream inner, SemaphoreSlim? gate)
        {
            _inner = inner;
            _gate = gate;
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (!_first && _gate is not null)
            {
                _gate.Wait(TimeSpan.FromSeconds(30));
            }

            _first = false;
            return _inner.Read(buffer, offset, Math.Min(count, 4096));
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (!_first && _gate is not null)
            {
                await _gate.WaitAsync(TimeSpan.FromSeconds(30), cancellationToken);
            }

            _first = false;
            return await _inner.ReadAsync(buffer[..Math.Min(buffer.Length, 4096)], cancellationToken);
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}

/// <summary>Writes the input to a new file as it is ("raw"); can stop early or fail midway.</summary>
internal sealed class CopyWriter : IStagingWriter
{
    public DiskImageFormat Format => DiskImageFormat.Raw;

    public long? DeclaredDecodedBytes { get; set; }

    public bool ReuseOutput { get; set; }

    /// <summary>Stop reading after this many bytes, as a decoder at the end of its data does.</summary>
    public int? StopAfter { get; set; }

    public int? FailAfter { get; set; }

    public int Writes { get; private set; }

    public async Task<WrittenImage> WriteAsync(Stream input, long? inputLength, string outputPath, IOperationSink sink,
        CancellationToken cancellationToken)
    {
        Writes++;
        await using var output = new FileStream(outputPath, ReuseOutput ? FileMode.Create : FileMode.CreateNew, FileAccess.Write);
        byte[] buffer = new byte[8192];
        long total = 0;
        while (true)
        {
            int want = StopAfter is { } stop ? (int)Math.Min(buffer.Length, stop - total) : buffer.Length;
            if (want <= 0)
            {
                break;
            }

            int n = await input.ReadAsync(buffer.AsMemory(0, want), cancellationToken);
            if (n == 0)
            {
                break;
            }

            await output.WriteAsync(buffer.AsMemory(0, n), cancellationToken);
            total += n;
            if (FailAfter is { } fail && total >= fail)
            {
                throw new OrasStagingException(ErrorCode.CorruptInput, "The stream is not a disk image.");
            }
        }

        return new WrittenImage(DiskImageFormat.Raw, total, total, total);
    }
}

internal sealed class TempFolder : IDisposable
{
    public TempFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "orasstaging-" + Guid.NewGuid().ToString("n")[..8]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string[] Files() => Directory.GetFiles(Path, "*", SearchOption.AllDirectories)
        .Select(f => System.IO.Path.GetRelativePath(Path, f)).Order(StringComparer.Ordinal).ToArray();

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

internal sealed class ListSink : IOperationSink
{
    public List<string> Lines { get; } = new();

    public void Progress(ProgressInfo info) { }

    public void Verbose(string message)
    {
        lock (Lines)
        {
            Lines.Add(message);
        }
    }

    public void Warning(string message) => Verbose("WARNING: " + message);
}
