/// An 8-bit image in height × width × channel order (as PIL and libturbojpeg store it).
/// `channels` is 1 (grayscale) or 3 (RGB).
public struct Image: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var channels: Int
    /// Row-major HWC bytes, `height · width · channels` of them.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * channels,
                     "tessera: image \(width)x\(height)x\(channels) needs \(width * height * channels) bytes, got \(pixels.count)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    public init(width: Int, height: Int, channels: Int, fill: UInt8 = 0) {
        self.init(width: width, height: height, channels: channels,
                  pixels: [UInt8](repeating: fill, count: width * height * channels))
    }

    @inline(__always)
    public subscript(y: Int, x: Int, c: Int) -> UInt8 {
        get { pixels[(y * width + x) * channels + c] }
        set { pixels[(y * width + x) * channels + c] = newValue }
    }

    /// The same image with three channels (grayscale repeated).
    public func rgb() -> Image {
        if channels == 3 { return self }
        precondition(channels == 1, "tessera: cannot convert a \(channels)-channel image to RGB")
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) { out[3 * i] = pixels[i]; out[3 * i + 1] = pixels[i]; out[3 * i + 2] = pixels[i] }
        return Image(width: width, height: height, channels: 3, pixels: out)
    }
}
