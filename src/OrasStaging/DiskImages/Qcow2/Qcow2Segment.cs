namespace OrasStaging.DiskImages.Qcow2;

internal enum Qcow2SegmentKind
{
    /// <summary>Reads as zeros: unallocated (there is never a backing file), the v3 zero flag, or zero subclusters.</summary>
    Zero,

    /// <summary>Stored as is at <see cref="Qcow2Segment.HostOffset"/>.</summary>
    Data,

    /// <summary>A whole compressed cluster: <see cref="Qcow2Segment.CompressedLength"/> bytes at HostOffset.</summary>
    Compressed,
}

/// <summary>A guest range of one kind inside one cluster (or, coalesced by the reader, across clusters).</summary>
internal readonly record struct Qcow2Segment(long GuestOffset, long Length, Qcow2SegmentKind Kind, long HostOffset, int CompressedLength);
