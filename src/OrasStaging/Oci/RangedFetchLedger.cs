using System.Text.Json;
using OrasStaging.IO;

namespace OrasStaging.Oci;

/// <summary>
/// <c>&lt;partial&gt;.ranges</c>: which <see cref="RangedFetch.ChunkSize"/> ranges of a <c>.partial</c> hold bytes
/// already written, and of which blob (digest and size). Why: ranges finish out of order, so the length of the
/// partial says nothing; after a kill the next run fetches only the ranges missing here (at most those that were in
/// flight), and a partial whose record names another blob is discarded before anything is resumed (issue 9).
/// A range is recorded only after its bytes were handed to the file; the digest check at the end stays the proof.
/// </summary>
internal sealed class RangeLedger
{
    public const string Suffix = ".ranges";

    private readonly object _gate = new();
    private readonly HashSet<long> _done = new();

    // One connection writes in order: everything below _through is on the file even when no whole range is yet.
    // Saved every MiB and on Save(), so a stalled or killed single-connection download resumes where it stopped.
    private long _through;
    private long _savedThrough;
    private const long ThroughSaveStep = 1 << 20;
    private readonly string _path;

    private RangeLedger(string path, string digest, long size, long chunkSize)
    {
        _path = path;
        Digest = digest;
        Size = size;
        ChunkSize = chunkSize;
    }

    public string Digest { get; }

    public long Size { get; }

    public long ChunkSize { get; }

    private long Chunks => Math.Max(1, (Size + ChunkSize - 1) / ChunkSize);

    public static string PathFor(string partialPath) => partialPath + Suffix;

    /// <summary>An empty record for <paramref name="image"/> beside <paramref name="partialPath"/> (not yet saved).</summary>
    public static RangeLedger Create(string partialPath, OrasImage image) =>
        new(PathFor(partialPath), image.Digest, image.Size, RangedFetch.ChunkSize);

    /// <summary>The record beside the partial, or null when there is none or it cannot be read.</summary>
    public static RangeLedger? TryRead(string partialPath)
    {
        string path = PathFor(partialPath);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = doc.RootElement;
            var ledger = new RangeLedger(path, root.GetProperty("digest").GetString() ?? string.Empty,
                root.GetProperty("size").GetInt64(), root.GetProperty("chunkSize").GetInt64());
            if (ledger.ChunkSize <= 0 || ledger.Size < 0)
            {
                return null;
            }

            foreach (var index in root.GetProperty("done").EnumerateArray())
            {
                ledger._done.Add(index.GetInt64());
            }

            if (root.TryGetProperty("through", out var through) && through.TryGetInt64(out long t) && t >= 0)
            {
                ledger._through = ledger._savedThrough = Math.Min(t, ledger.Size);
            }

            return ledger;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return null;
        }
    }

    /// <summary>Whether this record is about <paramref name="image"/> on the grid this version uses.</summary>
    public bool IsFor(OrasImage image) =>
        Oci.Digest.AreEqual(Digest, image.Digest) && Size == image.Size && ChunkSize == RangedFetch.ChunkSize;

    public int Count
    {
        get { lock (_gate) { return _done.Count; } }
    }

    /// <summary>The bytes from 0 that are all recorded: where a single connection resumes.</summary>
    public long ContiguousBytes
    {
        get
        {
            lock (_gate)
            {
                long i = 0;
                while (_done.Contains(i))
                {
                    i++;
                }

                return Math.Max(Math.Min(Size, i * ChunkSize), _through);
            }
        }
    }

    /// <summary>Every range that overlaps [from, from + count) is recorded.</summary>
    public bool IsStored(long from, long count)
    {
        if (count <= 0)
        {
            return false;
        }

        lock (_gate)
        {
            for (long i = from / ChunkSize; i <= (from + count - 1) / ChunkSize; i++)
            {
                if (!_done.Contains(i))
                {
                    return false;
                }
            }

            return true;
        }
    }

    /// <summary>Records the ranges lying wholly in [from, end) and saves when that added one.</summary>
    public void MarkRange(long from, long end)
    {
        lock (_gate)
        {
            bool added = false;
            for (long i = (from + ChunkSize - 1) / ChunkSize; i < Chunks && Math.Min(Size, (i + 1) * ChunkSize) <= end; i++)
            {
                added |= _done.Add(i);
            }

            if (added)
            {
                SaveLocked();
            }
        }
    }

    /// <summary>Everything below <paramref name="end"/> is on the file (written in order).</summary>
    public void MarkThrough(long end)
    {
        lock (_gate)
        {
            if (end > _through)
            {
                _through = Math.Min(end, Size);
                if (_through - _savedThrough >= ThroughSaveStep)
                {
                    SaveLocked();
                }
            }
        }

        MarkRange(0, end);
    }

    /// <summary>Forgets ranges the file is too short to hold (a partial truncated behind the record's back).</summary>
    public void DropBeyond(long length)
    {
        lock (_gate)
        {
            _done.RemoveWhere(i => Math.Min(Size, (i + 1) * ChunkSize) > length);
            _through = Math.Min(_through, length);
        }
    }

    public void Clear()
    {
        lock (_gate)
        {
            _done.Clear();
            _through = 0;
            SaveLocked();
        }
    }

    public void Save()
    {
        lock (_gate)
        {
            SaveLocked();
        }
    }

    /// <summary>Removes the record beside <paramref name="partialPath"/> (the partial was committed or discarded).</summary>
    public static void Delete(string partialPath) => PartialFile.TryDelete(PathFor(partialPath));

    private void SaveLocked()
    {
        // Beside, then renamed over: a kill mid-write leaves the old record or the new one, never half of one.
        string temp = _path + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 4096))
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteString("digest", Digest);
            json.WriteNumber("size", Size);
            json.WriteNumber("chunkSize", ChunkSize);
            json.WriteNumber("through", _through);
            json.WriteStartArray("done");
            foreach (long i in _done.Order())
            {
                json.WriteNumberValue(i);
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        File.Move(temp, _path, overwrite: true);
        _savedThrough = _through;
    }
}
