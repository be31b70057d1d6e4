#!/usr/bin/env ruby
# A takefive worker in Ruby (Debian: apt-get install ruby-ffi-rzmq), speaking the
# T5W1 protocol of docs/protocol.md to job pools (--connect, PUSH/PULL) and
# service dispatchers (--service, DEALER with READY and heartbeats).
#
# It serves the reference task set (examples/workers/python/tasks.py):
#   echo   the payload back, same encoding
#   pid    this process id, as JSON
#   sleep  sleep for the payload's seconds (a JSON number) and return it
#   fail   always an ERROR "failed"
#
#   ruby examples/workers/ruby/worker.rb --service tcp://127.0.0.1:5555 --heartbeat 1
require 'ffi-rzmq'
require 'json'
require 'socket'

HEADER = 'T5W1'.b
NAME_RE = %r{\A[A-Za-z0-9_.:/-]{1,255}\z}n
JOB_ID_RE = /\A[\x21-\x7e]{1,255}\z/n
FUNCTIONS = %w[echo fail pid sleep].freeze

def log(text)
  warn "ruby-worker #{Process.pid}: #{text}"
end

def now
  Process.clock_gettime(Process::CLOCK_MONOTONIC)
end

# One DEALER connection to a dispatcher.
class Link
  attr_accessor :endpoint, :sock, :last_seen, :next_heartbeat, :backoff, :reconnect_at

  def initialize(endpoint)
    @endpoint = endpoint
    @backoff = 0.0
    @reconnect_at = 0.0
  end
end

class Worker
  def initialize(connects, services, heartbeat, liveness)
    @ctx = ZMQ::Context.new
    @heartbeat = heartbeat
    @liveness = liveness
    @info = "ruby/#{Process.pid}@#{Socket.gethostname}"
    @results = {}
    @stopping = false
    @jobs = 0
    @pull = nil
    @connects = connects
    unless connects.empty?
      @pull = @ctx.socket(ZMQ::PULL)
      @pull.setsockopt(ZMQ::LINGER, 0)
      @pull.setsockopt(ZMQ::RCVHWM, 100)
      connects.each { |ep| check(@pull.connect(ep), "connect #{ep}") }
    end
    @links = services.map { |ep| Link.new(ep) }
    @links.each { |link| connect_link(link) }
  end

  def stop
    @stopping = true
  end

  def check(rc, what)
    raise "#{what}: #{ZMQ::Util.error_string}" unless ZMQ::Util.resultcode_ok?(rc)
  end

  def connect_link(link)
    link.sock = @ctx.socket(ZMQ::DEALER)
    link.sock.setsockopt(ZMQ::LINGER, 0)
    check(link.sock.connect(link.endpoint), "connect #{link.endpoint}")
    ms = (@heartbeat * 1000).round.to_s
    link.sock.send_strings([HEADER, 'READY', ms, @info, *FUNCTIONS])
    link.last_seen = now
    link.next_heartbeat = now + @heartbeat
  end

  def reset_link(link, backoff)
    link.sock&.close
    link.sock = nil
    if backoff
      link.backoff = [[link.backoff * 2, @heartbeat].max, 32 * @heartbeat].min
      link.reconnect_at = now + link.backoff
    else
      link.reconnect_at = now
    end
  end

  def tick_links
    t = now
    @links.each do |link|
      if link.sock.nil?
        connect_link(link) if !@stopping && t >= link.reconnect_at
      elsif t - link.last_seen > @heartbeat * @liveness
        log "dispatcher #{link.endpoint} silent; reconnecting"
        reset_link(link, true)
      elsif t >= link.next_heartbeat
        link.sock.send_strings([HEADER, 'HEARTBEAT'])
        link.next_heartbeat = t + @heartbeat
      end
    end
  end

  def result_socket(endpoint)
    return nil if endpoint.empty?

    @results[endpoint] ||= begin
      sock = @ctx.socket(ZMQ::PUSH)
      sock.setsockopt(ZMQ::LINGER, 2000)
      check(sock.connect(endpoint), "connect #{endpoint}")
      sock
    end
  end

  # Sleep, still heartbeating every dispatcher.
  def busy_sleep(seconds)
    deadline = now + seconds
    while (left = deadline - now) > 0
      sleep([left, @heartbeat / 4].min)
      @links.each do |link|
        next if link.sock.nil? || now < link.next_heartbeat

        link.sock.send_strings([HEADER, 'HEARTBEAT'])
        link.next_heartbeat = now + @heartbeat
      end
    end
  end

  # [T5W1, REQUEST, job-id, name, encoding, payload, reply-to] -> reply frames or nil
  def run(frames)
    unless frames.size == 7 && frames[2] =~ JOB_ID_RE && frames[3] =~ NAME_RE && frames[4] =~ NAME_RE
      log "dropping a malformed REQUEST (#{frames.size} frames)"
      return nil
    end
    job_id, name, enc, payload = frames[2], frames[3], frames[4], frames[5]
    error = ->(code, text) { [HEADER, 'ERROR', job_id, code, text.b] }
    reply = ->(encoding, data) { [HEADER, 'REPLY', job_id, encoding, data] }
    return error.call('bad-request', "unknown payload encoding '#{enc}'") unless %w[json msgpack raw].include?(enc)

    case name
    when 'echo' then reply.call(enc, payload)
    when 'pid' then reply.call('json', Process.pid.to_s)
    when 'sleep'
      seconds = begin
        enc == 'json' ? JSON.parse(payload, quirks_mode: true) : nil
      rescue JSON::ParserError
        nil
      end
      unless seconds.is_a?(Numeric) && seconds >= 0
        return error.call('failed', 'ValueError: sleep takes a non-negative number of seconds')
      end

      busy_sleep(seconds)
      reply.call('json', payload)
    when 'fail' then error.call('failed', 'RuntimeError: failed on purpose')
    else error.call('unknown', "no function '#{name}' here (known: #{FUNCTIONS.join(', ')})")
    end
  end

  def recv(sock)
    frames = []
    rc = sock.recv_strings(frames, ZMQ::DONTWAIT)
    ZMQ::Util.resultcode_ok?(rc) ? frames.map(&:b) : nil
  end

  def handle_job(frames)
    unless frames.size >= 2 && frames[0] == HEADER && frames[1] == 'REQUEST'
      log 'dropping a bad message on the job socket'
      return
    end
    out = run(frames)
    return if out.nil?

    sock = result_socket(frames[6])
    if sock.nil?
      log 'dropping a job without a reply-to endpoint'
    else
      sock.send_strings(out)
      @jobs += 1
    end
  end

  def handle_link(link, frames)
    link.last_seen = now
    link.backoff = 0.0
    if frames.size < 2 || frames[0] != HEADER
      log "dropping a bad message from #{link.endpoint}"
    elsif frames[1] == 'REQUEST'
      out = run(frames)
      if out
        link.sock&.send_strings(out)
        link.next_heartbeat = now + @heartbeat
        @jobs += 1
      end
    elsif frames[1] == 'HEARTBEAT' && frames.size == 2
      nil
    elsif frames[1] == 'DISCONNECT' && frames.size == 2
      log "dispatcher #{link.endpoint} said DISCONNECT; reconnecting"
      reset_link(link, false)
    else
      log "dropping an unexpected message from #{link.endpoint}"
    end
  end

  def serve
    log "#{@info} serving #{FUNCTIONS.join(', ')}"
    until @stopping
      poller = ZMQ::Poller.new
      poller.register_readable(@pull) if @pull
      @links.each { |link| poller.register_readable(link.sock) if link.sock }
      t = now
      timeout = 0.1
      @links.each do |link|
        due = link.sock ? link.next_heartbeat : link.reconnect_at
        timeout = [timeout, [due - t, 0].max].min
      end
      poller.poll((timeout * 1000).ceil)
      poller.readables.each do |sock|
        break if @stopping # start no new job once stopping (the last one was answered)

        if sock.equal?(@pull)
          frames = recv(@pull)
          handle_job(frames) if frames
        else
          link = @links.find { |l| l.sock.equal?(sock) }
          while !@stopping && link&.sock && (frames = recv(link.sock))
            handle_link(link, frames)
          end
        end
      end
      tick_links
    end
    shutdown
  end

  # Clean leave (docs/protocol.md), in this order: read every job already queued on
  # the PULL socket, then disconnect it (libzmq discards what is still queued on a
  # pipe whose endpoint is disconnected), say DISCONNECT to each dispatcher (no call
  # of theirs is running: their requests still queued here are dropped, and the
  # dispatcher retries or fails them), then run the jobs read and send their results.
  def shutdown
    held = []
    if @pull
      while (frames = recv(@pull))
        held << frames
      end
      @connects.each { |ep| @pull.disconnect(ep) }
    end
    @links.each do |link|
      next unless link.sock

      link.sock.send_strings([HEADER, 'DISCONNECT'])
      link.sock.setsockopt(ZMQ::LINGER, 500)
      link.sock.close
      link.sock = nil
    end
    log "stopping: running the #{held.size} job(s) already received" unless held.empty?
    held.each { |frames| handle_job(frames) }
    @pull&.close
    @results.each_value(&:close) # LINGER 2 s: results get out
    @ctx.terminate
    log "stopped after #{@jobs} job(s)"
  end
end

connects = []
services = []
heartbeat = 1.0
liveness = 3
args = ARGV.dup
until args.empty?
  flag = args.shift
  value = args.shift or abort 'usage: worker.rb [--connect EP]... [--service EP]... [--heartbeat S] [--liveness N]'
  case flag
  when '--connect' then connects << value
  when '--service' then services << value
  when '--heartbeat' then heartbeat = Float(value)
  when '--liveness' then liveness = Integer(value)
  else abort "unknown option #{flag}"
  end
end
abort 'a worker needs --connect or --service' if connects.empty? && services.empty?

worker = Worker.new(connects, services, heartbeat, liveness)
%w[TERM INT].each { |sig| Signal.trap(sig) { worker.stop } }
worker.serve
